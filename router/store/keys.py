"""The key schema: every key of a namespace starts with `acd:{<namespace>}:`.

The braces are the Redis Cluster hash tag, so a whole namespace lives in one slot and every Lua
script may touch any of its keys. Scripts receive the prefix as KEYS[1] and build the other
names with the same suffixes as below (router/lua/lib/keys.lua); this module is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    namespace: str

    @property
    def prefix(self) -> str:
        """The common prefix, hash tag included."""
        return f"acd:{{{self.namespace}}}:"

    def _k(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def queues(self) -> str:
        """Hash: queue name -> packed queue config."""
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
        """String: packed agent record."""
        return self._k(f"ag:{agent_id}")

    def agent_classes(self, agent_id: str) -> str:
        """Set: ids of the routing classes whose requirement the agent meets."""
        return self._k(f"agcls:{agent_id}")

    def agent_excluded(self, agent_id: str) -> str:
        """Set: interactions the agent refused (never offered to it again)."""
        return self._k(f"agex:{agent_id}")

    def agent_preferred(self, agent_id: str) -> str:
        """Sorted set (order score): interactions in their preferred wait listing the agent."""
        return self._k(f"pref:{agent_id}")

    def interaction(self, interaction_id: str) -> str:
        """String: packed interaction record (expires `retention_s` after it ends)."""
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
    def class_filling(self) -> str:
        """Hash: class id -> `<SSCAN cursor>:<agents scanned>` of a class still being filled."""
        return self._k("clsfill")

    def routing_class(self, class_id: int) -> str:
        """String: packed class (channel, strategy, skills)."""
        return self._k(f"cls:{class_id}")

    def class_waiting(self, class_id: int) -> str:
        """Sorted set (order score): routable interactions waiting in the class."""
        return self._k(f"clsix:{class_id}")

    def class_agents(self, class_id: int) -> str:
        """Sorted set (strategy score): agents that could take an offer of the class now."""
        return self._k(f"clsag:{class_id}")

    def class_staffed(self, class_id: int) -> str:
        """Set: logged-in agents that meet the class, whatever their state."""
        return self._k(f"clsin:{class_id}")

    def queue_waiting(self, queue: str) -> str:
        """Sorted set (order score): interactions waiting in the queue, callbacks included."""
        return self._k(f"qw:{queue}")

    def queue_on_line(self, queue: str) -> str:
        """Sorted set (enqueued_at): interactions on the line (queued or offered)."""
        return self._k(f"ql:{queue}")

    def queue_scheduled(self, queue: str) -> str:
        """Set: scheduled callbacks of the queue that have not entered it yet."""
        return self._k(f"qcb:{queue}")

    @property
    def timers(self) -> str:
        """Sorted set: `<kind>:<id>` -> due ms; one per kind and record (`fill:<class id>` too)."""
        return self._k("timers")

    @property
    def arrival_seq(self) -> str:
        """String: arrival counter, the tie-break of equal order scores."""
        return self._k("seq")

    @property
    def events(self) -> str:
        """Stream: the durable event log."""
        return self._k("events")
