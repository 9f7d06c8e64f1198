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
observer = FilteringLogObserver(globalLogPublisher, [_levels])


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
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        level = self._LEVELS.get(record.levelname, LogLevel.info)
        Logger(namespace=record.name, observer=observer).emit(level, "{text}", text=text)
