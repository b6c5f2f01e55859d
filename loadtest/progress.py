"""Progress of long runs: a line on stderr every few seconds with the phase, how much of it is
done, the rate and the time left.

A background thread prints the line, so a phase that reports nothing itself (a model computed in
one call) still shows that it runs. The run's code only names its phases (`start`) and counts
what it has done (`advance`, `track`): both are cheap enough for every simulated call. The lines
go to the stream given (stderr for the CLI, never stdout, which stays parseable), each ended by a
newline whether or not it is a terminal, so a log keeps them; the first comes after `every_s`
seconds, so a quick run prints none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TextIO, TypeVar

EVERY_S = 5.0
T = TypeVar("T")


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """What a long run is doing, printed on `stream` every `every_s` seconds while it is used as
    a context manager; silent without a stream."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every_s = every_s
        self.clock = clock
        self.began = self.phase_began = clock()
        self.phase = "starting"
        self.context = ""
        """Shown before the phase (which part of a run the phases belong to)."""
        self.total: int | None = None
        self.unit = ""
        self.done = 0
        self.lines = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, phase: str, total: int | None = None, unit: str = "calls") -> None:
        """A new phase of `total` `unit`s (None: not counted)."""
        with self._lock:
            self.phase, self.total, self.unit, self.done = phase, total, unit, 0
            self.phase_began = self.clock()

    def advance(self, n: int = 1) -> None:
        """`n` more units of the phase done."""
        self.done += n

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, each counted as done once the loop body has handled it."""
        for item in items:
            yield item
            self.done += 1

    def line(self) -> str:
        """The progress line: time since the start, phase, done / total, rate, time left."""
        with self._lock:
            now = self.clock()
            phase, total, unit, done = self.phase, self.total, self.unit, self.done
            if self.context:
                phase = f"{self.context}: {phase}"
            in_phase = now - self.phase_began
        text = f"[{duration(now - self.began)}] {phase}"
        if total is None and not done:
            return f"{text}: {duration(in_phase)}"
        rate = done / in_phase if in_phase > 0 else 0.0
        if total is None:
            return f"{text}: {done} {unit}, {rate:.3g} {unit}/s"
        share = 100 * done / total if total else 100.0
        left = f"ETA {duration((total - done) / rate)}" if rate > 0 else "ETA -"
        return f"{text}: {done}/{total} {unit} ({share:.0f}%), {rate:.3g} {unit}/s, {left}"

    def tick(self) -> None:
        """Print the progress line now."""
        if self.stream is not None:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.lines += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.tick()

    def __enter__(self) -> Progress:
        if self.stream is not None:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lines and self.stream is not None:
            end = "done" if kind is None else "stopped"
            self.stream.write(f"[{duration(self.clock() - self.began)}] {end}\n")
            self.stream.flush()


SILENT = Progress()
"""A progress that prints nothing: the default of functions that report progress."""
