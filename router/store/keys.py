"""The key schema: every key of a namespace starts with `acd:{<namespace>}:`.

The braces are the Redis Cluster hash tag, so a whole namespace lives in one slot and every Lua
script may touch any of its keys. Scripts receive the prefix as KEYS[1] and build every other
name with router/lua/lib/keys.lua, which has one builder of the same name for each key below;
tests/store/test_schema.py checks that both build the same strings. This module is the reference:
what each key holds, its record's fields in router/store/records.py.
"""

from __future__ import annotations

from dataclasses import dataclass

ClassId = int | str
"""A routing class id: scripts read it back from sets as a string."""


@dataclass(frozen=True)
class Keys:
    """The keys of one namespace."""

    namespace: str

    @property
    def prefix(self) -> str:
        """The common prefix, hash tag included."""
        return f"acd:{{{self.namespace}}}:"

    def _k(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def queues(self) -> str:
        """Hash: queue name -> packed queue (records.QueueRecord)."""
        return self._k("queues")

    @property
    def agents(self) -> str:
        """Sorted set (score 0): every agent id, for paging in id order."""
        return self._k("agents")

    @property
    def logged_in(self) -> str:
        """Set: ids of agents whose state is not logged_out."""
        return self._k("logged_in")

    def agent(self, agent_id: str) -> str:
        """String: packed agent (records.AgentRecord)."""
        return self._k(f"ag:{agent_id}")

    def agent_classes(self, agent_id: str) -> str:
        """Set: ids of the routing classes the agent qualifies for (requirement and channel)."""
        return self._k(f"agcls:{agent_id}")

    def agent_excluded(self, agent_id: str) -> str:
        """Set: interactions the agent refused (never offered to it again)."""
        return self._k(f"agex:{agent_id}")

    def agent_preferred(self, agent_id: str) -> str:
        """Sorted set (order score): interactions in their preferred wait listing the agent."""
        return self._k(f"pref:{agent_id}")

    @property
    def live(self) -> str:
        """Sorted set (score 0): `<15-digit created ms>:<id>` of every interaction not yet ended,
        for paging oldest first (GET /v1/interactions)."""
        return self._k("live")

    def interaction(self, interaction_id: str) -> str:
        """String: packed interaction (records.InteractionRecord), kept `retention_s` once ended."""
        return self._k(f"ix:{interaction_id}")

    @property
    def classes(self) -> str:
        """Hash: routing class signature (channel|strategy|requirement) -> class id."""
        return self._k("classes")

    @property
    def class_seq(self) -> str:
        """String: last routing class id handed out."""
        return self._k("class_seq")

    @property
    def class_token(self) -> str:
        """String: names this generation of the namespace's classes, for the library's memo."""
        return self._k("cls_token")

    @property
    def class_available_built(self) -> str:
        """String: present once the classes' `clsav:` sets were built from the agents (data
        written before they existed has none)."""
        return self._k("clsav_built")

    @property
    def class_filling(self) -> str:
        """Hash: class id -> records.FILL_STATE, while the class is being filled."""
        return self._k("clsfill")

    @property
    def classes_waiting(self) -> str:
        """Set: ids of the classes whose waiting index may hold an interaction (a superset: an
        id is added with each placement, removed when an agent finds the index empty), so an
        agent looks only at those of its classes."""
        return self._k("clsw")

    def routing_class(self, class_id: ClassId) -> str:
        """String: packed routing class (records.ClassRecord)."""
        return self._k(f"cls:{class_id}")

    def class_waiting(self, class_id: ClassId) -> str:
        """Sorted set (order score): routable interactions waiting in the class."""
        return self._k(f"clsix:{class_id}")

    def class_agents(self, class_id: ClassId) -> str:
        """Sorted set (strategy score): agents that could take an offer of the class now."""
        return self._k(f"clsag:{class_id}")

    def class_staffed(self, class_id: ClassId) -> str:
        """Set: logged-in agents that qualify for the class (skills, channel), in any state."""
        return self._k(f"clsin:{class_id}")

    def class_queues(self, class_id: ClassId) -> str:
        """Set: queues with a step whose requirement is the class (staffed sets follow them)."""
        return self._k(f"clsq:{class_id}")

    def class_available(self, class_id: ClassId) -> str:
        """Set: agents of the class in state `available` (free, ringing, on a call or in
        wrap-up): who may become free for its offers (read by the EWT)."""
        return self._k(f"clsav:{class_id}")

    def class_wrap_up(self, class_id: ClassId) -> str:
        """Sorted set (wrap-up end, ms): agents of the class in wrap-up while `available`, who
        are free for offers when it ends (read by the EWT)."""
        return self._k(f"clswu:{class_id}")

    def queue_waiting(self, queue: str) -> str:
        """Sorted set (order score): interactions waiting in the queue, callbacks included."""
        return self._k(f"qw:{queue}")

    def queue_on_line(self, queue: str) -> str:
        """Sorted set (enqueued_at): interactions on the line (queued or offered)."""
        return self._k(f"ql:{queue}")

    def queue_scheduled(self, queue: str) -> str:
        """Set: scheduled callbacks of the queue that have not entered it yet."""
        return self._k(f"qcb:{queue}")

    def queue_staffed(self, queue: str) -> str:
        """Set: logged-in agents with capacity on its channel that meet any of its steps (§4)."""
        return self._k(f"qst:{queue}")

    def queue_averages(self, queue: str) -> str:
        """Hash: the queue's moving averages for the EWT (records.QueueAverages)."""
        return self._k(f"qs:{queue}")

    @property
    def timers(self) -> str:
        """Sorted set: `<kind>:<id>` -> due ms; at most one per kind and record (timers.py)."""
        return self._k("timers")

    @property
    def arrival_seq(self) -> str:
        """String: arrival counter, the tie-break of equal order scores."""
        return self._k("seq")

    @property
    def events(self) -> str:
        """Stream: the durable event log."""
        return self._k("events")

    @property
    def webhook_reads(self) -> str:
        """Hash: a webhook's consumer group -> the log's entries it has read or lost
        (router/lua/webhook_next.lua)."""
        return self._k("whr")

    @property
    def metric_counters(self) -> str:
        """Hash: business counters, '<metric>|<label values>' -> count (records.py)."""
        return self._k("m:c")

    @property
    def metric_histograms(self) -> str:
        """Hash: business histograms, '<metric>|<label values>|<le>' -> count (records.py)."""
        return self._k("m:h")

    @property
    def agent_time(self) -> str:
        """Hash: agent time by activity (records.py)."""
        return self._k("m:at")

    @property
    def agents_by_state(self) -> str:
        """Hash: '<state>|<activity>' -> agents."""
        return self._k("m:ag")

    def metrics_window(self, queue: str, minute: int) -> str:
        """Hash: the queue's figures of one minute since the epoch (records.MetricsWindow)."""
        return self._k(f"m:w:{queue}:{minute}")

    @property
    def metrics_snapshot(self) -> str:
        """String: the shared snapshot of time-dependent figures (records.MetricsSnapshot)."""
        return self._k("m:snap")

    @property
    def competition(self) -> str:
        """Hash: the classes competing for each class's agents, for the EWT (records.py)."""
        return self._k("m:ewt")
