"""Capacity: how many concurrent users one server serves before they notice (issue 15).

    python -m benchmarks.run --only capacity [--step-seconds S] [--max-users N] ...

Each simulated user has a session of its own on ``apps/capacity_app.py`` and
does what a dashboard user does: moves the slider once a second and waits for
the Div that Python writes (the round trip), while the server streams 10 rows
to it every 100 ms. One user in ten (users 0, 10, 20, …) also presses the
button every ``click_every`` seconds; its sync callback takes 100 ms.

For each server and each click mode (``none``: nobody clicks; ``sleep`` and
``numpy``: the two ways the callback spends its 100 ms, see the app), a fresh
server is started and the number of users raised step by step, users of
earlier steps staying connected. Each step lets the new users settle, then
measures a window of ``step_seconds``. A step passes while the p99 round trip
of the users who do not click is ≤ ``p99_ms`` and each of them received at
least ``rows_fraction`` of the rows streamed to it (a clicking user's own
rows stop while its 100 ms callback holds its document: 5 % of them at one
click every 2 s, whatever the server; they are reported, not judged); the
ramp stops at the
first failing step or at ``max_users``. Loopback only: the servers are the
ones ``servers.py`` starts on 127.0.0.1.

What is reported per server: the largest passing N of each mode, the server's
CPU (all its processes) and RSS per user at that N, and how far the clicks
move the others' p99 (the click mode's p99 minus the no-click p99 at the
same N).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from bokeh.document.events import MessageSentEvent
from bokeh.events import ButtonClick

from .loadgen import PROTOCOL, BokehConnection, SyncedDocument, model_changes, run_pool, streamed_rows, visit
from .bokeh310 import Unavailable
from .servers import ServerFailed, ServerProcess, base_kind, running_server

NAME = "capacity"
APP = "capacity_app.py"
#: how the clicking users' callback spends its 100 ms (the app's ``click`` query argument); ``none``: no clicks
MODES = ("none", "sleep", "numpy")
#: the servers compared, in the order each is ramped: docsyncd with its default --num-threads and with
#: sync callbacks on the reactor (``-t0``), with --workers 2; bokeh serve 3.9 (the benchmarks' own Bokeh)
#: in one process and with --num-procs 2; bokeh serve 3.10 (its own venv, benchmarks/bokeh310.py).
#: A further variant is a line in ``servers.VARIANTS`` (its kind and extra arguments) and its name here.
KINDS = ("docsyncd", "docsyncd-t0", "docsyncd-w2", "bokeh", "bokeh-np2", "bokeh310")
#: the kind the goals are checked on, and the one it is compared with
SUBJECT, REFERENCE = "docsyncd", "bokeh"
#: goal: the subject serves at least this many times the reference's users per process, at the same p99
USERS_GOAL = 3.0
#: goal: the clicking users' 100 ms callbacks move the others' p99 by at most this many ms
CLICK_MOVE_GOAL_MS = 10.0
#: rows the app streams to each session per second (10 rows every 100 ms)
ROWS_PER_SECOND = 100.0
#: one user in this many clicks
CLICKER_EVERY = 10
#: seconds between two slider moves of a user
SLIDER_EVERY = 1.0


@dataclass(frozen=True)
class Plan:
    """How far and how fast to raise the load, and what a passing step is."""

    start_users: int = 10
    step_users: int = 10
    max_users: int = 200
    step_seconds: float = 20.0
    #: after new users joined, before the window: their sessions' build is not what users of a running server feel
    settle_seconds: float = 3.0
    #: the same before the first window: a server's other processes (``--workers``, ``--num-procs``) build
    #: their first document then, lazy imports included
    first_settle_seconds: float = 6.0
    click_every: float = 2.0
    p99_ms: float = 100.0
    rows_fraction: float = 0.95
    #: sessions opened at once when users join
    concurrency: int = 8

    def steps(self) -> Iterable[int]:
        users = self.start_users
        while users <= self.max_users:
            yield users
            users += self.step_users


FULL = Plan()
#: all six servers and three modes in about 15 minutes (steps that fail end a ramp early)
QUICK = Plan(start_users=10, step_users=30, max_users=130, step_seconds=6.0, settle_seconds=2.0,
             first_settle_seconds=4.0)
SMOKE = Plan(start_users=2, step_users=1, max_users=2, step_seconds=1.5, settle_seconds=0.5, first_settle_seconds=0.5,
             click_every=0.5, p99_ms=math.inf, rows_fraction=0.0)


@dataclass
class Step:
    """One window at ``users`` users: what they felt and what the server spent."""

    users: int
    clickers: int
    #: round trip of the users who do not click, ms
    p50: float
    p99: float
    #: round trip of the clicking users, ms (nan without clicks)
    clicker_p99: float
    #: the lowest share of its streamed rows a user who does not click received
    min_rows: float
    #: the same for the clicking users (nan without clicks)
    clicker_min_rows: float
    clicks_answered: int
    #: server CPU (all its processes) per user: ms of CPU per second of the window
    cpu_per_user: float
    #: server RSS (all its processes) per user after the first: growth since the first joined, KiB
    rss_per_user: float
    rss_total: float  # MiB
    #: CPU the load generator itself used, in cores: near 1, the figures measure the client
    client_cores: float
    passed: bool
    error: str = ""


@dataclass
class Ramp:
    kind: str
    mode: str
    steps: list[Step] = field(default_factory=list)
    error: str = ""

    @property
    def best(self) -> Step | None:
        """The largest passing step (steps stop at the first failure, so the last passing one)."""
        passed = [step for step in self.steps if step.passed]
        return passed[-1] if passed else None

    @property
    def open_ended(self) -> bool:
        """Every step passed up to the plan's last: the server's capacity is this or more."""
        return bool(self.steps) and all(step.passed for step in self.steps) and not self.error

    def at(self, users: int) -> Step | None:
        return next((step for step in self.steps if step.users == users), None)


class User:
    """One simulated user: a session, a slider round trip every second, its streamed rows, maybe clicks."""

    def __init__(self, conn: BokehConnection, synced: SyncedDocument, clicks: bool, plan: Plan) -> None:
        self.conn, self.synced, self.clicks, self.plan = conn, synced, clicks, plan
        self.slider, self.div = synced.model("slider"), synced.model("div")
        self.button, self.status = synced.model("button"), synced.model("status")
        self.rows = 0
        self.clicks_answered = 0
        #: round trips completed in the current window, seconds
        self.latencies: list[float] = []
        self._pending: tuple[str, float] | None = None  # (Div text awaited, when the slider moved)
        self._value = 0
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def join(cls, server: ServerProcess, mode: str, clicks: bool, plan: Plan) -> User:
        conn, reply = await visit(server.address, arguments=None if mode == "none" else {"click": mode})
        return cls(conn, SyncedDocument(reply), clicks and mode != "none", plan)

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._move_slider())]
        if self.clicks:
            self._tasks.append(asyncio.ensure_future(self._click()))

    def failure(self) -> BaseException | None:
        """Why one of this user's tasks ended (a dropped connection), or None while all run."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.conn.close()

    async def _read(self) -> None:
        div_id, status_id = self.div.id, self.status.id
        while True:
            message = await self.conn.recv(timeout=None)
            self.rows += streamed_rows(message)
            for event in model_changes(message):
                model = event["model"]["id"]
                if model == div_id and self._pending and event["new"] == self._pending[0]:
                    self.latencies.append(time.perf_counter() - self._pending[1])
                    self._pending = None
                elif model == status_id:
                    self.clicks_answered += 1

    async def _move_slider(self) -> None:
        await asyncio.sleep(random.uniform(0, SLIDER_EVERY))  # users are not in step with each other
        while True:
            now = time.perf_counter()
            if self._pending:  # still unanswered after a whole period: it counts, as the wait it already is
                self.latencies.append(now - self._pending[1])
            self._value += 1
            patch = self.synced.patch(self.slider, "value", self._value)
            self._pending = (f"value={self._value}", now)
            self.conn.send(patch)
            await asyncio.sleep(SLIDER_EVERY - (time.perf_counter() - now))

    async def _click(self) -> None:
        await asyncio.sleep(random.uniform(0, self.plan.click_every))
        doc = self.synced.doc
        while True:
            self.conn.send(PROTOCOL.create("PATCH-DOC", [MessageSentEvent(doc, "bokeh_event", ButtonClick(self.button))]))
            await asyncio.sleep(self.plan.click_every)


def _p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1e3 if samples else math.nan


async def _measure(server: ServerProcess, users: list[User], plan: Plan, rss0: int) -> Step:
    """One window over the users already joined and settled."""
    for user in users:
        user.latencies.clear()
    rows0 = [user.rows for user in users]
    clicks0 = sum(user.clicks_answered for user in users)
    cpu0, own0, start = server.tree_cpu_seconds(), time.process_time(), time.perf_counter()
    await asyncio.sleep(plan.step_seconds)
    cpu, own, wall = server.tree_cpu_seconds() - cpu0, time.process_time() - own0, time.perf_counter() - start
    failed = [user.failure() for user in users if user.failure() is not None]
    others = [t for user in users if not user.clicks for t in user.latencies]
    clickers = [t for user in users if user.clicks for t in user.latencies]
    shares = [((user.rows - r0) / (ROWS_PER_SECOND * wall), user.clicks) for user, r0 in zip(users, rows0)]
    min_rows = min((share for share, clicks in shares if not clicks), default=math.nan)
    clicker_min_rows = min((share for share, clicks in shares if clicks), default=math.nan)
    rss = server.tree_rss_bytes()
    p99 = _p(others, 99)
    error = f"{len(failed)} users' connections failed, first: {failed[0]!r}" if failed else ""
    if not others and not error:
        error = "no round trip completed"
    return Step(
        users=len(users), clickers=sum(user.clicks for user in users), p50=_p(others, 50), p99=p99,
        clicker_p99=_p(clickers, 99), min_rows=min_rows, clicker_min_rows=clicker_min_rows,
        clicks_answered=sum(user.clicks_answered for user in users) - clicks0,
        cpu_per_user=cpu / wall / len(users) * 1e3,
        rss_per_user=(rss - rss0) / (len(users) - 1) / 1024 if len(users) > 1 else math.nan,
        rss_total=rss / 2**20, client_cores=own / wall,
        passed=not error and p99 <= plan.p99_ms and min_rows >= plan.rows_fraction, error=error,
    )


async def ramp(server: ServerProcess, mode: str, plan: Plan, report=print) -> Ramp:
    """Raise the users on a running ``server`` step by step until a step fails or ``plan.max_users``."""
    result = Ramp(server.kind, mode)
    users: list[User] = []
    # The first user's session pays for lazy imports: RSS per user is counted from after it joined. It stays
    # connected, so that no session is discarded (and garbage-collected) during the ramp.
    try:
        users.append(await User.join(server, mode, True, plan))
        users[0].start()
        rss0 = server.tree_rss_bytes()
        for target in plan.steps():
            first = len(users)
            joined = await run_pool(target - first, plan.concurrency,
                                    lambda i: User.join(server, mode, (first + i) % CLICKER_EVERY == 0, plan))
            for user in joined:
                user.start()
            users += joined
            await asyncio.sleep(plan.first_settle_seconds if first == 1 else plan.settle_seconds)
            step = await _measure(server, users, plan, rss0)
            result.steps.append(step)
            report(f"capacity {server.kind:11s} {mode:5s} N={step.users:<4d} p50={step.p50:.1f} p99={step.p99:.1f} ms "
                   f"rows≥{step.min_rows:.1%} cpu/user={step.cpu_per_user:.1f} ms/s client={step.client_cores:.2f} "
                   f"{'pass' if step.passed else 'FAIL'} {step.error}")
            if not step.passed:
                break
    except Exception as exc:  # a server that refuses the next users has reached its capacity too
        result.error = f"joining users failed at N≈{len(users)}: {exc!r}"
        report(f"capacity {server.kind} {mode}: {result.error}")
    finally:
        await asyncio.gather(*(user.stop() for user in users), return_exceptions=True)
    return result


def run_capacity(kinds: Iterable[str], modes: Iterable[str], plan: Plan, log_dir: Path, report=print,
                 reactor: str | None = None) -> list[Ramp]:
    """Every kind × mode on a freshly started server, one after another.

    A server that does not start (an option this docsyncd lacks, no Python
    for Bokeh 3.10) gets a ramp with its error for each mode, and the run goes on.
    """
    ramps, broken = [], {}
    for mode in modes:
        for kind in kinds:
            if kind in broken:
                ramps.append(Ramp(kind, mode, error=broken[kind]))
                continue
            try:
                with running_server(kind, APP, log_dir, reactor=reactor) as server:
                    ramps.append(asyncio.run(ramp(server, mode, plan, report)))
            except (ServerFailed, Unavailable, OSError) as exc:
                broken[kind] = "not started: " + " … ".join(dict.fromkeys(
                    line.strip() for line in (str(exc).splitlines() or [repr(exc)])[::-1] if line.strip()))[:300]
                report(f"capacity {kind} {mode}: {broken[kind]}")
                ramps.append(Ramp(kind, mode, error=broken[kind]))
    return ramps


# -- report ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: str = ".1f") -> str:
    return "—" if value is None or math.isnan(value) else format(value, digits)


def clicks_move(ramps: list[Ramp], kind: str, mode: str) -> float | None:
    """How many ms the clicks of ``mode`` add to the others' p99 at the same N: the click ramp's p99 minus
    the no-click ramp's, at the largest N where both passed (the click ramp's first step if it failed there).
    Steps where the no-click ramp failed are left out: there the server was overloaded without any click."""
    clicked = _find(ramps, kind, mode)
    quiet = _find(ramps, kind, "none")
    if clicked is None or quiet is None:
        return None
    shared = [(step, base) for step in clicked.steps if (base := quiet.at(step.users)) is not None and base.passed]
    both = [pair for pair in shared if pair[0].passed]
    if not shared:
        return None
    step, base = both[-1] if both else shared[0]
    return step.p99 - base.p99


def _find(ramps: list[Ramp], kind: str, mode: str) -> Ramp | None:
    return next((r for r in ramps if r.kind == kind and r.mode == mode), None)


def users_ratio(subject: Ramp | None, reference: Ramp | None, plan: Plan) -> tuple[str, bool | None]:
    """The subject's largest passing N over the reference's, as text, and whether it meets ``USERS_GOAL``.

    Bounds stay bounds: a ramp that passed every step may serve more (its N is
    a lower bound), and a ramp whose first step failed serves fewer than
    ``plan.start_users`` (the ratio is then above the subject's N over that).
    None: not known from this run (a ramp missing, or both bounds open).
    """
    if subject is None or reference is None or not subject.steps or not reference.steps:
        return "", None
    s = subject.best.users if subject.best else 0
    r = reference.best.users if reference.best else 0
    if r == 0:
        if s == 0:
            return "", None
        low = s / plan.start_users
        return f"> {low:.2f}×", True if low >= USERS_GOAL else None
    ratio = s / r
    if subject.open_ended and reference.open_ended:
        return f"{ratio:.2f}× (both open)", None
    if subject.open_ended:
        return f"≥ {ratio:.2f}×", True if ratio >= USERS_GOAL else None
    if reference.open_ended:
        return f"≤ {ratio:.2f}×", False if ratio < USERS_GOAL else None
    return f"{ratio:.2f}×", ratio >= USERS_GOAL


def summary_table(ramps: list[Ramp], plan: Plan) -> str:
    """A column per server: the largest passing N per mode, CPU and RSS per user there, what clicks cost the
    others; the subject/reference ratio, and the goals (``USERS_GOAL``, ``CLICK_MOVE_GOAL_MS``) on the subject."""
    kinds = list(dict.fromkeys(r.kind for r in ramps))
    modes = list(dict.fromkeys(r.mode for r in ramps))
    compare = {SUBJECT, REFERENCE} <= set(kinds)
    head = ["figure", *kinds, *([f"{SUBJECT} / {REFERENCE}"] if compare else []), "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts = {True: "yes", False: "**no**", None: "?"}

    def row(label: str, cells: list[str], ratio: str = "", target: str = "", met: bool | None | str = "") -> None:
        verdict = verdicts[met] if target else ""
        lines.append("| " + " | ".join([label, *cells, *([ratio] if compare else []), target, verdict]) + " |")

    def values(value_of, digits: str) -> tuple[list[str], str]:
        got = {kind: value_of(kind) for kind in kinds}
        d, b = got.get(SUBJECT), got.get(REFERENCE)
        ratio = f"{d / b:.2f}×" if d is not None and b and not math.isnan(d) and not math.isnan(b) else ""
        return [_fmt(got[k], digits) for k in kinds], ratio

    def best(kind: str, mode: str) -> Step | None:
        found = _find(ramps, kind, mode)
        return found.best if found else None

    def users(kind: str, mode: str) -> str:
        found = _find(ramps, kind, mode)
        if found is None or not found.steps:
            return "—"
        return f"{found.best.users if found.best else 0}" + ("+" if found.open_ended else "")

    for mode in modes:
        what = "no clicks" if mode == "none" else f"{mode} clicks"
        ratio, met = users_ratio(_find(ramps, SUBJECT, mode), _find(ramps, REFERENCE, mode), plan)
        row(f"largest passing N, {what}", [users(k, mode) for k in kinds], ratio,
            f"{SUBJECT} ≥ {USERS_GOAL:g}× {REFERENCE}", met)
        row(f"  p99 others at that N (ms), {what}", *values(lambda k: best(k, mode).p99 if best(k, mode) else None, ".1f"))
        row(f"  server CPU per user at that N (ms/s), {what}",
            *values(lambda k: best(k, mode).cpu_per_user if best(k, mode) else None, ".2f"))
        row(f"  server RSS per user at that N (KiB), {what}",
            *values(lambda k: best(k, mode).rss_per_user if best(k, mode) else None, ".0f"))
    for mode in modes:
        if mode != "none":
            cells, _ = values(lambda k: clicks_move(ramps, k, mode), ".1f")
            move = clicks_move(ramps, SUBJECT, mode)
            row(f"{mode} clicks move the others' p99 by (ms)", cells, "",
                f"{SUBJECT} ≤ {CLICK_MOVE_GOAL_MS:g} ms", None if move is None else move <= CLICK_MOVE_GOAL_MS)
    notes = [
        "",
        f"A step passes while the p99 round trip of the users who do not click is ≤ {plan.p99_ms:g} ms and "
        f"each of them received ≥ {plan.rows_fraction:.0%} of its rows; steps of {plan.step_seconds:g} s from "
        f"{plan.start_users} users by {plan.step_users} up to {plan.max_users}. Largest passing N = 0: the first step "
        "failed; N+: every step passed, the server may serve more. All servers but `-w2` and `-np2` run one "
        f"process, so the N ratio is users per process at the same p99. Click moves: p99 with clicks minus p99 "
        "without, at the largest N both passed (the click ramp's first step if it failed there).",
    ]
    errors = [f"- {r.kind}, {r.mode}: {r.error}" for r in ramps if r.error]
    return "\n".join(lines + notes + ([""] + errors if errors else []))


def steps_table(ramps: list[Ramp]) -> str:
    """Every measured step, for reading how a server degrades."""
    lines = ["| server | clicks | N | p50 (ms) | p99 others (ms) | p99 clickers (ms) | min rows others "
             "| min rows clickers | clicks answered | CPU/user (ms/s) | RSS/user (KiB) | RSS (MiB) | client (cores) | pass |",
             "|" + "---|" * 14]
    for r in ramps:
        for s in r.steps:
            cells = [r.kind, r.mode, str(s.users), _fmt(s.p50), _fmt(s.p99), _fmt(s.clicker_p99),
                     _fmt(s.min_rows, ".1%"), _fmt(s.clicker_min_rows, ".1%"), str(s.clicks_answered),
                     _fmt(s.cpu_per_user, ".2f"), _fmt(s.rss_per_user, ".0f"), _fmt(s.rss_total, ".0f"),
                     _fmt(s.client_cores, ".2f"), "yes" if s.passed else f"no {s.error}".strip()]
            lines.append("| " + " | ".join(cells) + " |")
        if r.error:
            lines.append(f"| {r.kind} | {r.mode} |" + " |" * 11 + f" {r.error} |")
    return "\n".join(lines)


def markdown(ramps: list[Ramp], plan: Plan) -> str:
    return "\n".join(["## capacity (`apps/capacity_app.py`)", "", summary_table(ramps, plan), "",
                      "### capacity: every step", "", steps_table(ramps)])


def to_json(ramps: list[Ramp], plan: Plan) -> dict[str, Any]:
    return {"plan": asdict(plan), "ramps": [asdict(r) for r in ramps]}


# -- command line (used by benchmarks.run) -------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("capacity", "for --only capacity (defaults: the full plan, or the quick one)")
    group.add_argument("--start-users", type=int, help=f"users in the first step (default {FULL.start_users})")
    group.add_argument("--step-users", type=int, help=f"users added per step (default {FULL.step_users})")
    group.add_argument("--max-users", type=int, help=f"stop after the step with this many (default {FULL.max_users})")
    group.add_argument("--step-seconds", type=float, help=f"measured window per step (default {FULL.step_seconds:g})")
    group.add_argument("--modes", nargs="+", choices=MODES, help="click modes (default: all)")
    group.add_argument("--capacity-servers", nargs="+", choices=KINDS,
                       help=f"servers to ramp (default: {' '.join(KINDS)})")
    group.add_argument("--bokeh310-python", metavar="PATH",
                       help="Python ≥ 3.12 that builds the bokeh310 server's venv in .bench/bokeh310 "
                            "(default: python3.13 or python3.12 on PATH, or pyenv's)")


def plan_from(args: argparse.Namespace, quick: bool) -> Plan:
    """The plan the options ask for; bad values are the parser's error, not a traceback."""
    changes = {name: value for name in ("start_users", "step_users", "max_users", "step_seconds")
               if (value := getattr(args, name)) is not None}
    for name, value in changes.items():
        if value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, not {value}")
    plan = replace(QUICK if quick else FULL, **changes)
    if plan.max_users < plan.start_users:
        raise ValueError(f"--max-users {plan.max_users} is below the first step's {plan.start_users} users")
    return plan


def kinds_from(args: argparse.Namespace, servers: Iterable[str]) -> tuple[str, ...]:
    """``--capacity-servers``, or every capacity kind whose server is among ``--servers``."""
    if args.capacity_servers:
        return tuple(args.capacity_servers)
    return tuple(kind for kind in KINDS if base_kind(kind) in servers)

