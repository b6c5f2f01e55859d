"""Real traces to the trace format: Anonymous Bank (Technion) and Asterisk `queue_log`.

Both infer a roster (an agent's shift per day runs from the start of its first service to the
end of its last; its skills are the queues it served, level 3) and estimate the patience of
callers who did not abandon: at least their wait, drawn from a Kaplan-Meier fit of patience
(abandons are events, answered waits are censored) conditioned on exceeding the observed wait,
with an exponential tail beyond the last abandon. Deterministic for a seed. Each call keeps its
history (`wait_s`, `outcome`, `agent_id`) for `calibrate`. A `Selection` keeps some days and a
time window of each; trace day 0 is then the first day kept.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from loadtest.progress import SILENT, Progress
from loadtest.trace import Call, Roster, RosterAgent, merge_shifts

DAY_S = 86_400.0
PRIORITY_CREDIT_S = 90.0
"""Queue credit of Anonymous Bank priority customers (priority 2), as their ACD gave them."""


@dataclass
class Imported:
    """An imported trace, its inferred roster and what was skipped."""

    calls: list[Call]
    roster: Roster
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PatienceFit:
    """Kaplan-Meier survival of patience: S after each abandon time, and the tail hazard."""

    times: tuple[float, ...]
    survival: tuple[float, ...]
    tail_rate: float

    def survival_at(self, t: float) -> float:
        """S(t): the share of callers still willing to wait at t."""
        i = bisect.bisect_right(self.times, t)
        return self.survival[i - 1] if i else 1.0

    def sample_above(self, wait: float, rng: random.Random) -> float | None:
        """A patience > `wait` drawn from the fit; None (never abandons) without abandons."""
        target = self.survival_at(wait) * (1.0 - rng.random())
        i = bisect.bisect_right(self.times, wait)
        j = bisect.bisect_left(self.survival, -target, lo=i, key=lambda s: -s)
        if j < len(self.times) and self.survival[j] <= target:
            return self.times[j]
        if self.tail_rate <= 0:
            return None
        start = max(wait, self.times[-1] if self.times else 0.0)
        base = self.survival_at(start)
        return start + math.log(base / target) / self.tail_rate if base > target else start


def fit_patience(observations: Iterable[tuple[float, bool]]) -> PatienceFit:
    """Kaplan-Meier fit of (wait, abandoned) pairs; answered waits are censored."""
    obs = sorted(observations)
    at_risk = len(obs)
    times: list[float] = []
    survival: list[float] = []
    s = 1.0
    i = 0
    while i < len(obs):
        t = obs[i][0]
        same: list[bool] = []
        j = i
        while j < len(obs) and obs[j][0] == t:
            same.append(obs[j][1])
            j += 1
        events = sum(same)
        if events:
            s *= 1 - events / at_risk
            times.append(t)
            survival.append(s)
        at_risk -= len(same)
        i = j
    total_wait = sum(w for w, _ in obs)
    abandons = sum(1 for _, a in obs if a)
    return PatienceFit(tuple(times), tuple(survival), abandons / total_wait if total_wait else 0.0)


def name_of(raw: str) -> str:
    """A queue or skill name from a raw label (lowercase, other characters to '-')."""
    name = re.sub(r"[^a-z0-9_.:-]", "-", raw.strip().lower()).lstrip("_.:-")[:64]
    return name or "queue"


def id_of(raw: str) -> str:
    """An agent or interaction id from a raw label."""
    ident = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", raw.strip()).lstrip("_.:@+-")[:128]
    return ident or "x"


@dataclass
class Record:
    """A call as a source records it, before patience is estimated; `arrival_s` counts from
    midnight of the source's first day."""

    id: str
    arrival_s: float
    queue: str
    wait_s: float
    handle_s: float | None
    """None: not answered."""
    abandoned: bool
    agent: str | None = None
    credit_s: float | None = None

    @property
    def outcome(self) -> str:
        """`answered`, `abandoned`, or `timed_out` (left the queue unanswered otherwise)."""
        if self.handle_s is not None:
            return "answered"
        return "abandoned" if self.abandoned else "timed_out"


@dataclass(frozen=True)
class Selection:
    """Which days of a source to import (none named: all) and which time of day (seconds from
    midnight, start included, end excluded)."""

    days: frozenset[date] = frozenset()
    start_s: float = 0.0
    end_s: float = DAY_S

    def apply(self, records: list[Record], first: date, notes: list[str]) -> list[Record]:
        """The records kept, moved so that trace day 0 is the first day kept; a note per day."""
        kept = [
            r
            for r in records
            if (not self.days or first + timedelta(days=int(r.arrival_s // DAY_S)) in self.days)
            and self.start_s <= r.arrival_s % DAY_S < self.end_s
        ]
        if not kept:
            notes.append("no calls in the selected days and hours" if records else "no call read")
            return kept
        origin = min(int(r.arrival_s // DAY_S) for r in kept)
        counts: dict[int, int] = defaultdict(int)
        for r in kept:
            r.arrival_s -= origin * DAY_S
            counts[int(r.arrival_s // DAY_S)] += 1
        for day, n in sorted(counts.items()):
            calls = f"{n} call" + "s" * (n != 1)
            notes.append(f"trace day {day}: {first + timedelta(days=origin + day)} ({calls})")
        return kept


def parse_day(text: str) -> list[date]:
    """`YYYY-MM-DD`, or a range `YYYY-MM-DD..YYYY-MM-DD` (both ends included)."""
    start, _, end = text.partition("..")
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end or start)
    except ValueError:
        raise ValueError(
            f"day must be YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD, not {text!r}"
        ) from None
    if last < first:
        raise ValueError(f"day range ends before it starts: {text!r}")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def parse_clock(text: str) -> float:
    """`HH:MM` (or `HH:MM:SS`, `24:00`) to seconds from midnight."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        h, m, sec = int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0
        seconds = h * 3600 + m * 60 + sec
        if not (0 <= m < 60 and 0 <= sec < 60 and 0 <= seconds <= DAY_S):
            raise ValueError
    except ValueError:
        raise ValueError(f"time of day must be HH:MM, not {text!r}") from None
    return seconds


def finish(
    records: list[Record], notes: list[str], seed: int, progress: Progress = SILENT
) -> Imported:
    """Calls with estimated patience and their history, and the inferred roster."""
    progress.start("patience (Kaplan-Meier) and roster", len(records))
    rng = random.Random(seed)
    by_queue: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for r in records:
        by_queue[r.queue].append((r.wait_s, r.abandoned))
    pooled = fit_patience(o for obs in by_queue.values() for o in obs)
    fits = {
        q: fit_patience(obs) if any(a for _, a in obs) else pooled for q, obs in by_queue.items()
    }
    handles: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.handle_s is not None:
            handles[r.queue].append(r.handle_s)
    pool = [h for hs in handles.values() for h in hs] or [0.0]
    calls = []
    roster = infer_roster(records)
    for r in progress.track(sorted(records, key=lambda r: (r.arrival_s, r.id))):
        patience = r.wait_s if r.abandoned else fits[r.queue].sample_above(r.wait_s, rng)
        outcome = r.outcome
        # Never answered: a handle time of its queue, should a what-if answer it.
        handle = r.handle_s if r.handle_s is not None else rng.choice(handles.get(r.queue) or pool)
        calls.append(
            Call(
                id=r.id,
                arrival_s=round(r.arrival_s, 3),
                queue=r.queue,
                handle_s=round(handle, 3),
                credit_s=r.credit_s,
                patience_s=None if patience is None else round(patience, 3),
                wait_s=round(r.wait_s, 3),
                outcome=outcome,
                agent_id=r.agent if outcome == "answered" else None,
            )
        )
    return Imported(calls, roster, notes)


def infer_roster(records: Sequence[Record]) -> Roster:
    """Agents' shifts per day (first service start to last service end) and served queues."""
    spans: dict[tuple[str, int], list[float]] = {}
    skills: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.agent is None or r.handle_s is None:
            continue
        start = r.arrival_s + r.wait_s
        key = (r.agent, int(start // DAY_S))
        span = spans.setdefault(key, [start, start + r.handle_s])
        span[0], span[1] = min(span[0], start), max(span[1], start + r.handle_s)
        skills[r.agent].add(r.queue)
    agents = []
    for agent in sorted(skills):
        shifts = merge_shifts(
            (s, max(e, s + 1.0)) for (a, _), (s, e) in sorted(spans.items()) if a == agent
        )
        agents.append(
            RosterAgent(agent, dict.fromkeys(sorted(skills[agent]), 3), {"voice": 1}, shifts)
        )
    return Roster(tuple(agents))


def config_text(imported: Imported) -> str:
    """A configuration with one voice queue per queue of the trace (SLA 80 % in 20 s)."""
    parts = ["# Queues of an imported trace: one per queue seen, its own skill at level 1.\n"]
    for queue in sorted({c.queue for c in imported.calls}):
        parts.append(
            f'\n[[queues]]\nname = "{queue}"\nskills = {{ "{queue}" = 1 }}\n'
            "sla = { threshold_s = 20, target = 0.8 }\noffer_timeout_s = 30\nwrap_up_s = 0\n"
        )
    return "".join(parts)


BANK_COLUMNS = (
    "vru+line",
    "call_id",
    "customer_id",
    "priority",
    "type",
    "date",
    "vru_entry",
    "vru_exit",
    "vru_time",
    "q_start",
    "q_exit",
    "q_time",
    "outcome",
    "ser_start",
    "ser_exit",
    "ser_time",
    "server",
)


def _clock(text: str) -> float:
    """H:MM:SS to seconds of the day."""
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def anonymous_bank(
    lines: Iterable[str],
    seed: int = 1,
    selection: Selection = Selection(),
    progress: Progress = SILENT,
) -> Imported:
    """The Anonymous Bank format: PHANTOM and never-queued hang-ups are left out."""
    rows: list[tuple[int, dict[str, str]]] = []
    notes: list[str] = []
    skipped: dict[str, int] = defaultdict(int)
    for number, line in enumerate(progress.track(lines), start=1):
        cells = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if not cells or not line.strip() or cells[0] == "vru+line":
            continue
        if len(cells) != len(BANK_COLUMNS):
            notes.append(f"line {number}: {len(cells)} fields, expected {len(BANK_COLUMNS)}")
            continue
        rows.append((number, dict(zip(BANK_COLUMNS, cells, strict=True))))
    days = []
    for number, row in rows:
        try:
            d = row["date"]
            days.append(
                date(
                    2000 + int(d[:2]) if int(d[:2]) < 50 else 1900 + int(d[:2]),
                    int(d[2:4]),
                    int(d[4:6]),
                )
            )
        except (ValueError, IndexError):
            notes.append(f"line {number}: date: not YYMMDD: {row['date']!r}")
            days.append(date.min)
    first = min((d for d in days if d != date.min), default=date.min)
    records = []
    for (number, row), day in zip(rows, days, strict=True):
        outcome = row["outcome"].upper()
        if day == date.min:
            continue
        queued = row["q_start"] not in ("0:00:00", "00:00:00")
        if outcome == "PHANTOM":
            skipped["PHANTOM"] += 1
            continue
        if outcome not in ("AGENT", "HANG"):
            notes.append(f"line {number}: outcome: unknown {row['outcome']!r}")
            continue
        if not queued and outcome == "HANG":
            skipped["hung up before queueing"] += 1
            continue
        try:
            base = (day - first).days * DAY_S
            if queued:
                arrival, wait = _clock(row["q_start"]), float(row["q_time"])
            else:
                arrival, wait = (
                    _clock(
                        row["ser_start"] if row["vru_exit"] in ("0:00:00", "") else row["vru_exit"]
                    ),
                    0.0,
                )
            handle = float(row["ser_time"]) if outcome == "AGENT" else None
        except ValueError as error:
            notes.append(f"line {number}: {error}")
            continue
        server = row["server"]
        records.append(
            Record(
                id=id_of(f"{row['vru+line']}-{row['call_id']}"),
                arrival_s=base + arrival,
                queue=name_of(row["type"]),
                wait_s=max(0.0, wait),
                handle_s=handle,
                abandoned=outcome == "HANG",
                agent=None if server in ("NO_SERVER", "") or handle is None else id_of(server),
                credit_s=PRIORITY_CREDIT_S if row["priority"] == "2" else None,
            )
        )
    notes.extend(f"skipped {n} {why}" for why, n in sorted(skipped.items()))
    return finish(selection.apply(_unique(records), first, notes), notes, seed, progress)


def _unique(records: list[Record]) -> list[Record]:
    """Records with ids made unique by a suffix."""
    seen: dict[str, int] = defaultdict(int)
    for r in records:
        seen[r.id] += 1
        if seen[r.id] > 1:
            r.id = f"{r.id}-{seen[r.id]}"
    return records


def _queue_log_event(
    call: dict[str, float | str], event: str, at: float, agent: str, data: list[str]
) -> bool:
    """Apply one `queue_log` event to an open call; whether it closed the call."""
    if event == "CONNECT":
        call.update(wait=float(data[0]), agent=agent, connect=at)
    elif event in ("COMPLETECALLER", "COMPLETEAGENT", "TRANSFER"):
        talk = float(data[1] if event != "TRANSFER" else data[3])
        call.update(handle=talk, agent=agent)
        call.setdefault("wait", float(data[0] if event != "TRANSFER" else data[2]))
        return True
    elif event in ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY"):
        wait = float(data[2]) if len(data) > 2 and data[2] else at - float(call["enter"])
        call.update(wait=wait, end=event)
        return True
    return False


def queue_log(
    lines: Iterable[str],
    seed: int = 1,
    selection: Selection = Selection(),
    progress: Progress = SILENT,
) -> Imported:
    """Asterisk `queue_log` (days in UTC); EXITWITHTIMEOUT and EXITEMPTY are censored waits, not
    abandons (outcome `timed_out`)."""
    # ENTERQUEUE opens a call (callid, queue); CONNECT gives the hold time and the agent;
    # COMPLETECALLER/COMPLETEAGENT (holdtime|calltime) and TRANSFER (ext|ctx|holdtime|calltime)
    # close an answered call; ABANDON (position|origposition|waittime) closes an abandoned one.
    open_calls: dict[tuple[str, str], dict[str, float | str]] = {}
    closed: list[dict[str, float | str]] = []
    notes: list[str] = []
    skipped: dict[str, int] = defaultdict(int)
    for number, line in enumerate(progress.track(lines), start=1):
        f = line.strip().split("|")
        if len(f) < 5 or not line.strip():
            continue
        try:
            at = float(f[0])
        except ValueError:
            notes.append(f"line {number}: time: not a number: {f[0]!r}")
            continue
        callid, queue, agent, event, data = f[1], f[2], f[3], f[4].upper(), f[5:]
        key = (callid, queue)
        call = open_calls.get(key)
        if event == "ENTERQUEUE":
            open_calls[key] = {"id": callid, "queue": queue, "enter": at}
            continue
        if call is None:
            if event in ("CONNECT", "ABANDON", "COMPLETECALLER", "COMPLETEAGENT", "TRANSFER"):
                skipped[f"{event} without ENTERQUEUE"] += 1
            continue
        try:
            if _queue_log_event(call, event, at, agent, data):
                closed.append(open_calls.pop(key))
        except (ValueError, IndexError):
            notes.append(f"line {number}: {event}: bad data fields {'|'.join(data)!r}")
    if open_calls:
        skipped["calls without an end"] += len(open_calls)
    origin = min((float(c["enter"]) for c in closed), default=0.0) // DAY_S * DAY_S
    records = []
    for c in closed:
        end = c.get("end")
        handle = c.get("handle")
        records.append(
            Record(
                id=id_of(str(c["id"])),
                arrival_s=float(c["enter"]) - origin,
                queue=name_of(str(c["queue"])),
                wait_s=max(0.0, float(c.get("wait", 0.0))),
                handle_s=None if handle is None else float(handle),
                abandoned=end == "ABANDON",
                agent=id_of(str(c["agent"])) if handle is not None else None,
            )
        )
        if end in ("EXITWITHTIMEOUT", "EXITEMPTY"):
            skipped[f"{end} (kept, patience estimated above the wait)"] += 1
    notes.extend(f"{n} {why}" for why, n in sorted(skipped.items()))
    first = datetime.fromtimestamp(origin, UTC).date()
    return finish(selection.apply(_unique(records), first, notes), notes, seed, progress)
