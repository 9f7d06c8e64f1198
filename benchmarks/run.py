"""Run the benchmark set: docsyncd against ``bokeh serve``, alternating, one table.

    python -m benchmarks.run [--quick] [--rounds K] [--only SCENARIO ...] [--docsyncd-reactor NAME]
    python -m benchmarks.run --only capacity [--step-seconds S] [--max-users N] ...

For every scenario, K rounds; in each round docsyncd then bokeh serve, each a
freshly started server (A B A B …), so both see the same machine minute by
minute. Prints the Markdown table and writes it to benchmarks/results/latest.md
(raw per-round figures to latest.json, server logs to results/logs/); a run
with --only writes <scenario>[+<scenario>...].md and .json instead, so that it
does not replace the full run's results; --docsyncd-reactor NAME adds
"-NAME" to those names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from . import bokeh310, capacity
from .report import RunResults, markdown_table
from .scenarios import FULL, QUICK, SCENARIOS, Scenario, Sizes
from .servers import KINDS, base_kind, docsyncd_missing, running_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LOG_DIR = RESULTS_DIR / "logs"
#: a scenario round that takes longer than this is a hung server, not a slow one
ROUND_TIMEOUT = 180.0
#: after this many failed rounds in a row, a server is skipped for the rest of a scenario
MAX_FAILURES = 2


class ScenarioFailed(Exception):
    """A scenario raised; the message carries the server's log tail."""


def run_round(scenario: Scenario, kind: str, sizes: Sizes, log_dir: Path = LOG_DIR,
              reactor: str | None = None) -> dict[str, float]:
    """Start a fresh ``kind`` server for ``scenario.app`` (docsyncd on ``reactor``, None: its default),
    run the scenario once, stop the server."""
    with running_server(kind, scenario.app, log_dir, reactor=reactor) as server:
        try:
            return asyncio.run(asyncio.wait_for(scenario.run(server, sizes), ROUND_TIMEOUT))
        except Exception as exc:
            raise ScenarioFailed(f"{exc!r}\n--- {kind} log ({server.log_path}):\n{server.log_tail()}") from exc


def describe(values: dict[str, float]) -> str:
    return "  ".join(f"{key}={value:.4g}" for key, value in values.items())


def run_all(scenarios: list[Scenario], kinds: tuple[str, ...], rounds: int, sizes: Sizes,
            reactor: str | None = None) -> RunResults:
    results = RunResults()
    for scenario in scenarios:
        # A scenario with variants compares those (each whose server is among ``kinds``) instead.
        order = tuple(v for v in scenario.variants if base_kind(v) in kinds) if scenario.variants else kinds
        failures = dict.fromkeys(order, 0)
        for round_no in range(1, rounds + 1):
            for kind in order:
                if failures[kind] >= MAX_FAILURES:
                    results.add(scenario.name, kind, None)
                    continue
                start = time.monotonic()
                try:
                    values = run_round(scenario, kind, sizes, reactor=reactor)
                except Exception as exc:  # one failed round must not lose the whole run
                    failures[kind] += 1
                    results.add(scenario.name, kind, None)
                    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
                    results.errors.append(f"{scenario.name} round {round_no} {kind}:\n{text}")
                    print(f"{scenario.name} r{round_no} {kind:8s} FAILED: {exc!r}", file=sys.stderr, flush=True)
                    continue
                failures[kind] = 0
                results.add(scenario.name, kind, values)
                took = time.monotonic() - start
                print(f"{scenario.name} r{round_no} {kind:11s} {describe(values)}  ({took:.1f} s)",
                      file=sys.stderr, flush=True)
    return results


def render(results: RunResults, scenarios: list[Scenario], header: list[str]) -> str:
    parts = ["# docsyncd vs bokeh serve", "", *header, ""] + ([markdown_table(results, scenarios), ""] if scenarios else [])
    parts += [f"- **{s.name}** (`apps/{s.app}`): {s.what}" for s in scenarios]
    if results.errors:
        parts += ["", "## Failures", ""]
        parts += [f"```\n{error[-4000:]}\n```" for error in results.errors]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads and 2 rounds (a few minutes)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, or 2 with --quick)")
    parser.add_argument("--only", action="append", choices=sorted([*SCENARIOS, capacity.NAME]), metavar="SCENARIO",
                        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}, "
                             f"or {capacity.NAME} (not in the full set: it takes long)")
    parser.add_argument("--servers", nargs="+", choices=KINDS, default=list(KINDS),
                        help="servers to run (default: both)")
    capacity.add_options(parser)
    parser.add_argument("--docsyncd-reactor", metavar="NAME",
                        help="run docsyncd on this Twisted reactor (twist's --reactor, e.g. epoll); "
                             "default: docsyncd's own, asyncio")
    args = parser.parse_args(argv)
    try:
        plan = capacity.plan_from(args, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    if args.bokeh310_python:
        if not os.access(args.bokeh310_python, os.X_OK):
            parser.error(f"--bokeh310-python {args.bokeh310_python}: not an executable file")
        bokeh310.base_python = args.bokeh310_python

    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or (2 if args.quick else 5)
    scenarios = [SCENARIOS[name] for name in (args.only or SCENARIOS) if name != capacity.NAME]
    kinds = tuple(k for k in KINDS if k in args.servers)
    notes = []
    missing = docsyncd_missing() if "docsyncd" in kinds else None
    if missing:
        kinds = tuple(k for k in kinds if k != "docsyncd")
        notes.append(f"docsyncd not run: {missing}.")
        print(f"warning: docsyncd not run: {missing}", file=sys.stderr)
    if not kinds:
        parser.error("no server to run")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    started, load_before = time.monotonic(), os.getloadavg()[0]
    results = run_all(scenarios, kinds, rounds, sizes, reactor=args.docsyncd_reactor)
    ramps = None
    if capacity.NAME in (args.only or ()):
        ramps = capacity.run_capacity(capacity.kinds_from(args, kinds), args.modes or capacity.MODES, plan, LOG_DIR,
                                      report=lambda line: print(line, file=sys.stderr, flush=True),
                                      reactor=args.docsyncd_reactor)
    minutes, load_after = (time.monotonic() - started) / 60, os.getloadavg()[0]
    busy = max(load_before, load_after) > (os.cpu_count() or 1)

    header = [
        "`" + " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]) + "`",
        f"on {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, Python {platform.python_version()}: "
        + (f"rounds: {rounds}, each {' then '.join(kinds)} on a fresh server"
           + "".join(f" ({s.name}: {' then '.join(s.variants)})" for s in scenarios if s.variants) + "; "
           if scenarios else "")
        + f"{minutes:.1f} min in all; load average {load_before:.2f} at the start, {load_after:.2f} at the end"
        + (" (more than the CPUs: other processes competed with the servers)." if busy else "."),
        "Trust server CPU (utime+stime, read in ns), memory and the ratios (paired per round); "
        "wall-clock figures move ±50% between runs on a shared machine.",
        *(["Sizes: " + ", ".join(f"{name}={value}" for name, value in asdict(sizes).items()) + "."] if scenarios else []),
        *notes,
    ]
    text = render(results, scenarios, header) + ("\n" + capacity.markdown(ramps, plan) + "\n" if ramps else "")
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = ("+".join(args.only) if args.only else "latest") + (f"-{args.docsyncd_reactor}" if args.docsyncd_reactor else "")
    (RESULTS_DIR / f"{stem}.md").write_text(text)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(
        {"sizes": asdict(sizes), "rounds": rounds, "kinds": kinds, "results": results.rounds,
         **({"capacity": capacity.to_json(ramps, plan)} if ramps else {})}, indent=1))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
