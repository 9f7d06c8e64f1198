"""Turn per-round figures into the Markdown comparison table.

Each cell is the median over rounds with the min–max beside it. The ratio is
taken per round pair (docsyncd round i / bokeh round i, servers run back to
back) and then the median of those, so slow drift of a shared machine cancels
out instead of landing on whichever server ran in the slower minute.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .scenarios import Figure, Scenario

#: one round's figures by key, or None when that round failed
RoundValues = dict[str, float] | None


@dataclass
class RunResults:
    """Everything one run measured: ``rounds[scenario][kind]`` lists rounds in the order run."""

    rounds: dict[str, dict[str, list[RoundValues]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, scenario: str, kind: str, values: RoundValues) -> None:
        self.rounds.setdefault(scenario, {}).setdefault(kind, []).append(values)

    def series(self, scenario: str, kind: str, key: str) -> list[float | None]:
        return [None if r is None else r.get(key) for r in self.rounds.get(scenario, {}).get(kind, [])]


def fmt(x: float) -> str:
    """Three significant digits, without scientific notation (1,570 not 1.57e+03)."""
    if abs(x) >= 99.95:
        return f"{x:,.0f}"
    return f"{x:#.3g}"


def spread(values: list[float]) -> str:
    """``median (min–max)``, or just the value when there is one."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def paired_ratios(docsyncd: list[float | None], bokeh: list[float | None]) -> list[float]:
    return [d / b for d, b in zip(docsyncd, bokeh) if d is not None and b not in (None, 0)]


def _cell(values: list[float | None], failed: bool) -> str:
    present = [v for v in values if v is not None]
    if present:
        return spread(present) + (" ⚠" if failed else "")
    return "failed" if failed else "—"


def figure_row(results: RunResults, scenario: Scenario, figure: Figure) -> str:
    d = results.series(scenario.name, "docsyncd", figure.key)
    b = results.series(scenario.name, "bokeh", figure.key)
    ratios = paired_ratios(d, b)
    ratio = statistics.median(ratios) if ratios else None
    d_present = [v for v in d if v is not None]
    d_median = statistics.median(d_present) if d_present else None
    if figure.target is None:
        target, met = "", ""
    else:
        verdict = figure.target.met(ratio, d_median)
        target, met = str(figure.target), {True: "yes", False: "**no**", None: "?"}[verdict]
    cells = [
        scenario.name,
        figure.label,
        _cell(d, None in d),
        _cell(b, None in b),
        spread(ratios) + "×" if ratios else "—",
        target,
        met,
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table(results: RunResults, scenarios: list[Scenario]) -> str:
    lines = [
        "| scenario | figure | docsyncd median (min–max) | bokeh median (min–max) | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        if scenario.name in results.rounds:
            lines += [figure_row(results, scenario, figure) for figure in scenario.figures]
    return "\n".join(lines)
