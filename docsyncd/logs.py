"""Log levels for docsyncd and the Bokeh code it runs.

twistd owns the log output; ``--log-level`` filters what docsyncd's modules
and Bokeh (which logs through the standard library) send to it.  Every
docsyncd module logs with ``Logger(observer=logs.observer)`` so the filter
applies, and Bokeh's ``logging`` records are re-emitted as Twisted log events
(with their tracebacks) instead of going to a stray stderr handler.

Tests: tests/test_logs.py
"""

from __future__ import annotations

import logging
import sys

from twisted.python.failure import Failure

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    jsonFileLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    globalLogPublisher,
)

LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

_TWISTED_LEVEL = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_filtered = FilteringLogObserver(globalLogPublisher, [_levels])

#: Control characters (and Unicode line breaks) as escapes: a value cannot start a log line of its own.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f, 0x85]} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape(value: str) -> str:
    """``value`` with control characters written as ``\\xNN`` (so ``"a\\nb"`` stays on one line)."""
    return value.translate(_ESCAPES)


def observer(event: dict) -> None:
    """Every docsyncd log event: control characters in its fields escaped, then filtered by level.

    Session ids, paths, headers and reasons that clients choose end up in
    log fields; escaped, a value with a newline cannot forge a log line.
    Twisted's own ``log_*`` fields (the format, a failure's traceback) are kept.
    """
    fields = {k: escape(v) if isinstance(v, str) and not k.startswith("log_") else v for k, v in event.items()}
    _filtered(fields)


def json_observer() -> ILogObserver:
    """Twisted's JSON log events on stdout, one per line (``--log-format json``)."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def set_level(name: str) -> None:
    """Apply ``--log-level`` to docsyncd's and Bokeh's messages."""
    _levels.setLogLevelForNamespace("", _TWISTED_LEVEL[name])
    bokeh = logging.getLogger("bokeh")
    bokeh.setLevel(logging.DEBUG if name == "trace" else getattr(logging, name.upper()))
    if not any(isinstance(h, _ToTwisted) for h in bokeh.handlers):
        bokeh.addHandler(_ToTwisted())
        bokeh.propagate = False
    # Importing bokeh gives its logger a handler writing to the stderr of that
    # moment (bokeh.util.logconfig), so every record also went out as raw text,
    # past twistd's log and --log-format json.
    from bokeh.util import logconfig

    if logconfig.default_handler is not None:
        bokeh.removeHandler(logconfig.default_handler)


class _ToTwisted(logging.Handler):
    """Re-emit standard-library records as Twisted log events."""

    _LEVELS = {"DEBUG": LogLevel.debug, "INFO": LogLevel.info, "WARNING": LogLevel.warn,
               "ERROR": LogLevel.error, "CRITICAL": LogLevel.critical}

    def emit(self, record: logging.LogRecord) -> None:
        level = self._LEVELS.get(record.levelname, LogLevel.info)
        logger = Logger(namespace=record.name, observer=observer)
        if record.exc_info and record.exc_info[1] is not None:  # the traceback as a failure: kept on its lines
            failure = Failure(record.exc_info[1], record.exc_info[0], record.exc_info[2])
            logger.failure("{text}", failure, level, text=record.getMessage())
        else:
            logger.emit(level, "{text}", text=record.getMessage())
