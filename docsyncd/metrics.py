"""Counters for operators: ``/metrics`` in Prometheus text format, ``/health``, a stats log line.

One ``Registry`` per process (``REGISTRY``), as Prometheus client libraries
keep a default registry: the places that count (sessions, the websocket
protocol, callbacks) increment it with one line each, and the resources here
read it.  Counting is a dict update; nothing is formatted until scraped.

Tests: tests/test_metrics.py
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any, Callable, Iterable

from twisted.application.internet import TimerService
from twisted.logger import Logger
from twisted.web import resource, server

from . import logs

log = Logger(observer=logs.observer)

#: Upper bounds (seconds) of the document build time histogram's buckets.
BUILD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms have."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> Iterable[tuple[str, int]]:
        running = 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            running += n
            yield ("+Inf" if bound == float("inf") else repr(bound)), running


class Registry:
    """What this process has done since it started."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.build_times: dict[str, Histogram] = {}
        #: Gauges are read when scraped: name -> (help, callable returning {labels: value}).
        self.gauges: dict[str, tuple[str, Callable[[], dict[tuple[tuple[str, str], ...], float]]]] = {}

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counters[name, tuple(sorted(labels.items()))] += amount

    def observe_build(self, app: str, seconds: float) -> None:
        histogram = self.build_times.get(app)
        if histogram is None:
            histogram = self.build_times[app] = Histogram(BUILD_BUCKETS)
        histogram.observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], dict[tuple[tuple[str, str], ...], float]]) -> None:
        self.gauges[name] = (help_text, read)

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far, gauges read now, as JSON-able data (a worker sends it to its parent)."""
        return {
            "counters": [[name, list(map(list, labels)), v] for (name, labels), v in self.counters.items()],
            "gauges": [[name, help_text, [[list(map(list, labels)), v] for labels, v in read().items()]]
                       for name, (help_text, read) in self.gauges.items()],
            "builds": {app: [h.counts, h.total] for app, h in self.build_times.items()},
        }

    def add(self, snapshot: dict[str, Any], with_gauges: bool = True) -> None:
        """Add a snapshot's counts to these (summing several workers' into one registry)."""
        for name, labels, v in snapshot["counters"]:
            self.counters[name, tuple(map(tuple, labels))] += v
        for app, (counts, total) in snapshot["builds"].items():
            histogram = self.build_times.setdefault(app, Histogram(BUILD_BUCKETS))
            histogram.counts = [a + b for a, b in zip(histogram.counts, counts)]
            histogram.total += total
        if with_gauges:
            for name, help_text, values in snapshot["gauges"]:
                summed: dict[tuple[tuple[str, str], ...], float] = dict(self.gauges[name][1]()) if name in self.gauges else {}
                for labels, v in values:
                    key = tuple(map(tuple, labels))
                    summed[key] = summed.get(key, 0) + v
                self.gauge(name, help_text, lambda summed=summed: summed)

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for name, (help_text, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [f"{name}{_labels(labels)} {_number(v)}" for labels, v in sorted(read().items())]
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = defaultdict(list)
        for (name, labels), v in self.counters.items():
            by_name[name].append((labels, v))
        for name in sorted(by_name):
            lines += [f"# HELP {name} {COUNTER_HELP.get(name, name)}", f"# TYPE {name} counter"]
            lines += [f"{name}{_labels(labels)} {_number(v)}" for labels, v in sorted(by_name[name])]
        if self.build_times:
            name = "docsync_document_build_seconds"
            lines += [f"# HELP {name} Time to run an app and build a session's document.", f"# TYPE {name} histogram"]
            for app, histogram in sorted(self.build_times.items()):
                for bound, n in histogram.cumulative():
                    lines.append(f'{name}_bucket{{app="{app}",le="{bound}"}} {n}')
                lines.append(f'{name}_sum{{app="{app}"}} {_number(histogram.total)}')
                lines.append(f'{name}_count{{app="{app}"}} {histogram.count}')
        return "\n".join(lines) + "\n"


COUNTER_HELP = {
    "docsync_sessions_created_total": "Sessions whose document was built.",
    "docsync_sessions_destroyed_total": "Sessions discarded, their destroyed hooks run.",
    "docsync_connections_opened_total": "Websockets that joined a session.",
    "docsync_messages_received_total": "Bokeh messages received, by type.",
    "docsync_messages_sent_total": "Bokeh messages sent, by type.",
    "docsync_bytes_sent_total": "Bytes of websocket message payloads sent.",
    "docsync_callback_errors_total": "User callbacks that raised.",
}


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


REGISTRY = Registry()


def watch_managers(registry: Registry, managers: list[Any]) -> None:
    """Publish live sessions and connections per app as gauges read at scrape time."""
    registry.gauge("docsync_sessions_live", "Sessions alive now.",
                   lambda: {(("app", m.app.name),): len(m.sessions) for m in managers})
    registry.gauge("docsync_connections_live", "Websockets connected now.",
                   lambda: {(("app", m.app.name),): sum(len(s.connections) for s in m.sessions) for m in managers})


class MetricsResource(resource.Resource):
    """``/metrics``: Prometheus text."""

    isLeaf = True

    def __init__(self, registry: Registry = REGISTRY):
        super().__init__()
        self.registry = registry

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.registry.render().encode("utf-8")


class HealthResource(resource.Resource):
    """``/health``: 200 while the reactor turns and every app loaded.

    An answer at all shows the reactor is turning; the apps are checked by
    their managers being in place (an app that failed to load stops start-up).
    """

    isLeaf = True

    def __init__(self, managers: list[Any]):
        super().__init__()
        self.managers = managers

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return ("ok " + " ".join(f"{m.app.name}={len(m.sessions)}" for m in self.managers) + "\n").encode()


class StatsLogService(TimerService):
    """One log line every ``--stats-log-frequency`` ms: sessions and connections per app."""

    def __init__(self, interval: float, managers: list[Any], clock: Any):
        super().__init__(interval, self.log_stats)
        self.managers = managers
        self.clock = clock  # TimerService runs its LoopingCall on this clock

    def log_stats(self) -> None:
        for m in self.managers:
            log.info(
                "stats: {label}: {sessions} sessions, {connections} connections",
                app=m.app.name, label=m.app.label, sessions=len(m.sessions),
                connections=sum(len(s.connections) for s in m.sessions),
            )
