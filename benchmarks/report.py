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
        if scenario.name in results.rounds and not scenario.variants:
            lines += [figure_row(results, scenario, figure) for figure in scenario.figures]
    tables = ["\n".join(lines)] if len(lines) > 2 else []
    tables += [variants_table(results, s) for s in scenarios if s.variants and s.name in results.rounds]
    return "\n\n".join(tables)


def variants_table(results: RunResults, scenario: Scenario) -> str:
    """One scenario run against several servers (``Scenario.variants``): a column each, and the ratios of
    every other server to the second (the baseline), paired per round; targets apply to the first."""
    ran = [v for v in scenario.variants if v in results.rounds[scenario.name]]
    if not ran:
        return ""
    baseline = scenario.variants[1] if len(scenario.variants) > 1 else ran[0]
    others = [v for v in ran if v != baseline]
    head = ["scenario", "figure", *[f"{v} median (min–max)" for v in ran],
            *[f"{v} / {baseline}" for v in others], "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for figure in scenario.figures:
        series = {v: results.series(scenario.name, v, figure.key) for v in ran}
        ratios = {v: paired_ratios(series[v], series.get(baseline, [])) for v in others}
        cells = [scenario.name, figure.label, *[_cell(series[v], None in series[v]) for v in ran],
                 *[spread(ratios[v]) + "×" if ratios[v] else "—" for v in others]]
        first = scenario.variants[0]
        if figure.target is None or first not in series:
            cells += ["", ""]
        else:
            ratio = statistics.median(ratios[first]) if ratios.get(first) else None
            present = [v for v in series[first] if v is not None]
            value = statistics.median(present) if present else None
            if figure.target.exactly and present:  # every round must hit it, not only the median
                verdict = all(figure.target.met(None, v) for v in present)
            else:
                verdict = figure.target.met(ratio, value)
            cells += [f"{first}: {figure.target}".replace("docsyncd ", ""),
                      {True: "yes", False: "**no**", None: "?"}[verdict]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
