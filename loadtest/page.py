"""The HTML report of `simulate` and `replay`: one self-contained page (inline SVG, no script).

It carries the run's parameters, each run's per-queue table and EWT table, the side-by-side
comparison of a what-if, the charts, and any further sections (the replay's client figures).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from loadtest.ewt import EWT_NOTE, ewt_figures, ewt_table
from loadtest.report import COLUMNS, comparison_table, row, run_figures, run_title
from loadtest.simulate import SimResult

STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}svg{display:block;margin:1em 0}"
    "p.note{color:#555;font-size:90%}"
)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of text cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def parameters_table(parameters: Mapping[str, object]) -> str:
    """The run's parameters, one a row (those not given left out)."""
    rows = [[name.replace("_", " "), str(v)] for name, v in parameters.items() if v is not None]
    return html_table(["parameter", "value"], rows)


def run_section(result: SimResult) -> str:
    """A run's per-queue table, notes and EWT table."""
    rows = [row(f) for f in run_figures(result)]
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in result.notes)
    return (
        f"<h2>{html.escape(run_title(result))}</h2>{html_table(COLUMNS, rows)}{notes}"
        f"<h3>EWT accuracy</h3>{html_table(*ewt_table(ewt_figures(result)))}"
        f"<p class='note'>{html.escape(EWT_NOTE)}</p>"
    )


def html_page(
    title: str,
    runs: Sequence[SimResult],
    parameters: Mapping[str, object],
    charts: Mapping[str, str],
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    """The page: parameters, each run, the comparison (several runs), the charts, then `extra`
    sections (heading, preformatted text)."""
    sections = [f"<h2>Parameters</h2>{parameters_table(parameters)}"]
    sections += [run_section(r) for r in runs]
    if len(runs) > 1:
        sections.append(
            f"<h2>{html.escape(' against '.join(r.label or 'run' for r in runs))}</h2>"
            + html_table(*comparison_table(runs))
        )
    sections.append("<h2>Charts</h2>" + "".join(charts.values()))
    sections += [
        f"<h2>{html.escape(heading)}</h2><pre>{html.escape(text)}</pre>" for heading, text in extra
    ]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "".join(sections)
        + "</body></html>\n"
    )
