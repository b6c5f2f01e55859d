"""The one clock every routing decision reads `now` from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Clock:
    """Wall-clock seconds since the epoch, optionally running `speed` times faster.

    A faster clock (load testing only, `--clock-speed`) starts at the real time and runs ahead
    from there, so a trace replayed at S x keeps its timers in trace time.
    """

    speed: float = 1.0
    _origin_real: float = field(default_factory=time.time)
    _origin_mono: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        """The current time in seconds."""
        return self._origin_real + (time.monotonic() - self._origin_mono) * self.speed


@dataclass
class ManualClock(Clock):
    """A clock that moves only when told to (tests and virtual-time simulation)."""

    t: float = 1_800_000_000.0

    def now(self) -> float:
        """The time last set."""
        return self.t

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` and return the new time."""
        self.t += seconds
        return self.t
