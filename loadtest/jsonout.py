"""`--json`: every figure of a command as one JSON document, for scripts.

The shape is documented in docs/loadtest.md ("Output", "JSON") and versioned (`VERSION`): fields may
be added in a version, never renamed or removed. Service levels, shares and errors of ASA are
fractions (0.8 is 80 %); times are seconds; a figure that cannot be computed is null.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.calibrate import Calibration, Compared, compared_rows
from loadtest.ewt import EwtFigures, ewt_figures
from loadtest.replay import ClientStats, ReplayResult
from loadtest.report import QueueFigures, comparison, run_figures
from loadtest.simulate import SimResult
from router.domain.models import QueueConfig

VERSION = 1
Json = dict[str, Any]


def finite(value: Any) -> Any:
    """`value` with NaN and infinities as null, tuples as lists (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def document(command: str, parameters: Mapping[str, Any], **body: Any) -> Json:
    """The document of a command: its name, the format's version, its parameters, its figures."""
    return {"command": command, "version": VERSION, "parameters": dict(parameters), **body}


def queue_json(f: QueueFigures, queues: Mapping[str, QueueConfig]) -> Json:
    """A queue's (or all queues') figures, with the queue's SLA (null for all queues)."""
    q = queues.get(f.queue)
    sla = None if q is None else {"threshold_s": q.sla.threshold_s, "target": q.sla.target}
    return {**asdict(f), "sla": sla}


def ewt_json(f: EwtFigures) -> Json:
    """Each predictor's mean error on all answered calls and on those that queued."""
    return {**asdict(f), "ratio": {"all_calls": f.ratio(), "queued_calls": f.ratio(queued=True)}}


def run_json(result: SimResult) -> Json:
    """A run: its size and cost, per-queue figures (then all queues) and EWT figures."""
    return {
        "label": result.label or "run",
        "calls": len(result.calls),
        "agents": len(result.roster.agents),
        "wall_s": result.wall_s,
        "operations": result.engine_calls,
        "queues": [queue_json(f, result.queues) for f in run_figures(result)],
        "ewt": [ewt_json(f) for f in ewt_figures(result)],
        "notes": list(result.notes),
    }


def comparison_json(runs: Sequence[SimResult]) -> Json:
    """The side-by-side figures of several runs: `values` in the order of `runs`."""
    return {
        "runs": [r.label or "run" for r in runs],
        "rows": [
            {"queue": c.queue, "figure": c.figure, "values": c.values} for c in comparison(runs)
        ],
    }


def client_json(stats: ClientStats, speed: float) -> Json:
    """The replay client's latencies and lateness (ms) per kind, errors and expected races."""
    return {
        "requests": stats.request_rows(),
        "errors": dict(stats.errors),
        "conflicts": dict(stats.conflicts),
        "lateness": stats.lateness_rows(speed),
    }


def replay_json(result: ReplayResult) -> Json:
    """The replayed run and what the client saw."""
    return {
        "run": run_json(result.sim),
        "speed": result.speed,
        "stopped": result.stopped,
        "clock_ratio": result.clock_ratio,
        "client": client_json(result.stats, result.speed),
    }


def compared_json(r: Compared) -> Json:
    """History, prediction and raw prediction of one queue or interval, and the errors."""
    empty: Mapping[str, QueueConfig] = {}
    return {
        "label": r.label,
        "history": queue_json(r.history, empty),
        "predicted": queue_json(r.predicted, empty),
        "raw": queue_json(r.raw, empty),
        "sl_error_pt": r.sl_error(),
        "asa_error": r.asa_error(),
    }


def calibration_json(cal: Calibration, interval_s: float) -> Json:
    """The fit (as the roster writes it, with what it rests on) and the prediction's rows."""
    fit = cal.fit
    return {
        "fit_days": cal.fit_days,
        "predict_days": cal.predict_days,
        "replications": cal.replications,
        "fit": {
            "exact_gaps": fit.exact,
            "censored_gaps": fit.censored,
            "iterations": fit.iterations,
            "wrap_up": {
                q: {**d.to_json(), "gaps": fit.gaps.get(q, 0)}
                for q, d in sorted(fit.wrap_up.items())
            },
            "breaks": None
            if fit.breaks is None
            else {
                **fit.breaks.to_json(),
                "on_break_share": fit.on_break_share(),
                "taken": fit.breaks_taken,
            },
            "notes": list(fit.notes),
        },
        "queues": [compared_json(r) for r in compared_rows(cal)],
        "interval_s": interval_s,
        "intervals": [compared_json(r) for r in compared_rows(cal, "interval", interval_s)],
    }


def write_json(target: str, doc: Json) -> None:
    """The document to file `target`, or to stdout for `-`."""
    text = json.dumps(finite(doc), indent=2, allow_nan=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")
