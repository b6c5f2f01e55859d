"""Agent unavailability the trace does not record — wrap-up and breaks — drawn for a seed.

`simulate` and `replay` both play it through `BreakBook`: the agent goes `not_ready` (reason
`break`) through the real API and back `available` when the break ends; wrap-up goes to the real
`complete(..., wrap_up_s=...)`. Draws are deterministic for a seed: a call's wrap-up comes from a
stream of its own (the same call gets the same draw whoever answers it, in every run of the seed,
so what-ifs compare like with like), an agent's breaks from the agent's stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from loadtest.trace import Breaks, Call, Roster

BREAK_REASON = "break"


class Unavailability:
    """The roster's wrap-up and breaks, drawn for `seed`."""

    def __init__(self, roster: Roster, seed: int = 1) -> None:
        self.roster = roster
        self.seed = seed
        self.agents = {a.id: a for a in roster.agents}
        self._streams: dict[str, random.Random] = {}

    def wrap_up_s(self, call: Call, agent_id: str) -> float | None:
        """The call's wrap-up: the trace's, else the agent's or its queue's distribution; None:
        the queue's configured `wrap_up_s`."""
        if call.wrap_up_s is not None:
            return call.wrap_up_s
        agent = self.agents.get(agent_id)
        dist = agent.wrap_up if agent is not None and agent.wrap_up else None
        dist = dist or self.roster.wrap_up.get(call.queue)
        if dist is None:
            return None
        return round(dist.quantile(random.Random(f"{self.seed}:wrap:{call.id}").random()), 3)

    def breaks(self, agent_id: str) -> Breaks | None:
        """The agent's breaks, else the roster's."""
        agent = self.agents.get(agent_id)
        return (agent.breaks if agent is not None else None) or self.roster.breaks

    def _stream(self, agent_id: str) -> random.Random:
        if agent_id not in self._streams:
            self._streams[agent_id] = random.Random(f"{self.seed}:breaks:{agent_id}")
        return self._streams[agent_id]

    def until_due(self, agent_id: str) -> float | None:
        """Shift seconds until the agent's next break falls due (None: no breaks)."""
        breaks = self.breaks(agent_id)
        if breaks is None:
            return None
        return round(self._stream(agent_id).expovariate(1 / breaks.every_s), 3)

    def duration(self, agent_id: str) -> float:
        """How long the break that falls due lasts."""
        breaks = self.breaks(agent_id)
        assert breaks is not None
        return round(breaks.duration.quantile(self._stream(agent_id).random()), 3)


@dataclass
class _Clock:
    token: int = 0
    owed: float | None = None
    """A break due while the agent was busy: its duration, taken after the call."""
    wrap_until: float = 0.0


class BreakBook:
    """Each agent's break clock, for a driver that plays the agents (`simulate`, `replay`).

    The driver starts a clock at each shift start and stops it at the shift's end; when a break
    falls due it asks `due`, which says when the break ends (the driver sets the agent
    `not_ready` now and `available` then, and starts the clock again) or owes it until the
    agent's call ends (`owed` at the completion). Tokens tell stale scheduled events apart.
    """

    def __init__(self, unavailability: Unavailability) -> None:
        self.unav = unavailability
        self.clocks: dict[str, _Clock] = {}

    def _clock(self, agent_id: str) -> _Clock:
        return self.clocks.setdefault(agent_id, _Clock())

    def start(self, agent_id: str, t: float) -> tuple[float, int] | None:
        """A new clock from trace second `t`: when its break falls due, and its token."""
        clock = self._clock(agent_id)
        clock.token += 1
        clock.owed = None
        wait = self.unav.until_due(agent_id)
        return None if wait is None else (t + wait, clock.token)

    def stop(self, agent_id: str) -> None:
        """End of shift: no more breaks on this clock."""
        clock = self._clock(agent_id)
        clock.token += 1
        clock.owed = None

    def current(self, agent_id: str, token: int) -> bool:
        """Whether `token` is the agent's running clock."""
        return self._clock(agent_id).token == token

    def due(self, agent_id: str, token: int, t: float, busy: bool) -> float | None:
        """A break falls due at `t`: when it ends, or None (a stale clock, or owed while the
        agent is `busy` with an offer or a call). In wrap-up it starts when wrap-up ends."""
        if not self.current(agent_id, token):
            return None
        clock = self._clock(agent_id)
        duration = self.unav.duration(agent_id)
        if busy:
            clock.owed = duration
            return None
        return max(t, clock.wrap_until) + duration

    def completed(self, agent_id: str, t: float, wrap_up_s: float) -> float | None:
        """The agent ends a call at `t` with this wrap-up: when its owed break ends, if any."""
        clock = self._clock(agent_id)
        clock.wrap_until = t + wrap_up_s
        owed, clock.owed = clock.owed, None
        return None if owed is None else clock.wrap_until + owed

    def token(self, agent_id: str) -> int:
        """The agent's running clock."""
        return self._clock(agent_id).token
