"""``twistd docsync``: command-line options and the service they describe.

Option names follow ``bokeh serve`` where it has them; times given in
milliseconds there are milliseconds here too.  ``makeService`` builds the
whole service tree up front; ``make_service(options, reactor)`` is the seam
tests use with a MemoryReactor.

Tests: tests/test_tap.py; --dev in tests/test_dev.py, --show in tests/test_cli.py
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from . import logs
from .guard_options import GuardOptions

log = Logger(observer=logs.observer)

DEFAULT_PORT = 5006


def _escape_endpoint(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class Options(GuardOptions, usage.Options):  # proxy, access and limit options: guard_options.py
    synopsis = "[options] [--app PATH ...] [--args ARG ...]"
    #: Whether at least one --app is required; without one, twistd docsync serves
    #: the empty app at / (as bokeh serve without files), for clients to push to.
    require_app = False
    longdesc = (
        "Serve Bokeh applications (a .py module or a directory with main.py), "
        "each at /<name>, keeping every session's document in sync with BokehJS "
        "over a websocket. Times are in milliseconds, as in `bokeh serve`."
    )

    optParameters = [
        ["port", "p", DEFAULT_PORT, "TCP port to listen on (sugar for --listen tcp:PORT).", int],
        ["address", "a", "", "Interface to listen on with --port (default: all)."],
        ["prefix", None, "", "URL prefix under which every app is served, e.g. /bokeh."],
        ["keep-alive", None, 37000, "Websocket ping interval in ms (0 disables).", int],
        ["check-unused-sessions", None, 17000, "How often to look for unused sessions, in ms.", int],
        ["unused-session-lifetime", None, 15000, "How long a session without connections lives, in ms.", int],
        ["session-token-expiration", None, 300, "Seconds a page's session token may wait before its websocket opens.", int],
        ["session-ids", None, "unsigned", "unsigned; signed with DOCSYNC_SECRET_KEY (BOKEH_SECRET_KEY also read); or "
                                          "external-signed: signed, and only ids made elsewhere are accepted."],
        ["websocket-max-message-size", None, 20 * 1024 * 1024, "Largest websocket message accepted, in bytes.", int],
        ["websocket-compression-level", None, 1, "zlib level (1 fastest to 9 smallest) of permessage-deflate, "
                                                 "used when a client offers it (0: off).", int],
        ["log-level", None, "info", f"One of {', '.join(logs.LEVELS)}."],
        ["log-format", None, "text", "text, or json: one JSON object per line, for log shippers."],
        ["stats-log-frequency", None, 15000, "Milliseconds between log lines counting sessions and connections (0: none).", int],
        ["index", None, None, "Jinja2 template for the index page (variables: prefix, items, published)."],
        ["store", None, None, "Where published documents are kept: an SQLite file (default: docsync-store.sqlite "
                              "in the working directory, created on the first publish), or 'memory' (lost on exit)."],
        ["workers", None, None, "Run N worker processes behind the same listeners, each session in one of them "
                                "(0: one per core); implies --lazy-documents. See docsyncd/workers.py.", int],
    ]
    optFlags = [
        ["no-websocket-compression", None, "Decline permessage-deflate (the same as --websocket-compression-level 0)."],
        ["disable-index", None, "Answer 404 at / instead of listing the apps."],
        ["dev", None, "Watch each app's .py, .html, .css and .yaml files; on a change, reload the app "
                      "and the open pages (development only)."],
        ["show", None, "Open each app in a web browser once the server listens."],
        ["args", None, "Every argument after this one becomes the apps' sys.argv[1:]."],
        ["lazy-documents", None, "Build a session's document when its websocket opens, not at the page GET "
                                 "(pages that need their document stay eager: templates, wherever the app sets them, and "
                                 "Panel's pages): docsyncd/lazy.py."],
        ["no-bokeh-tuning", None, "Run Bokeh's model internals exactly as shipped, without docsyncd's "
                                  "leaner replacements (docsyncd/bokeh_tuning.py)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["apps"] = []
        self["listen"] = []
        self["allow-websocket-origin"] = []
        self["app-argv"] = []

    def opt_app(self, path: str) -> None:
        """A Bokeh app to serve: a .py module or a directory with main.py (repeatable)."""
        self["apps"].append(path)

    def opt_listen(self, endpoint: str) -> None:
        """A Twisted server endpoint to listen on, e.g. tcp:5006, unix:/run/docsync.sock (repeatable)."""
        self["listen"].append(endpoint)

    def opt_allow_websocket_origin(self, host: str) -> None:
        """A host[:port] whose pages may open websockets (repeatable; replaces the default, this server itself)."""
        self["allow-websocket-origin"].append(host)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Everything after ``--args`` is the apps' argv, even when it looks like an option."""
        options = list(sys.argv[1:] if options is None else options)
        self["argv"] = list(options)  # as given: --workers starts its workers with them (workers.py)
        if "--args" in options:
            at = options.index("--args")
            self["app-argv"] = options[at + 1:]
            options = options[:at + 1]
        super().parseOptions(options)

    def parseArgs(self, *argv: str) -> None:
        if argv:
            raise usage.UsageError(f"unexpected argument {argv[0]!r}; apps are given with --app, their arguments after --args")

    def postOptions(self) -> None:
        if not self["apps"] and self.require_app:
            raise usage.UsageError("give at least one app with --app PATH (a .py module or a directory with main.py)")
        if self["store"] not in (None, "memory"):
            self["store"] = os.path.abspath(os.path.expanduser(self["store"]))  # before twistd changes directory
        for name in ("keep-alive",):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} must be 0 (off) or a positive number of milliseconds")
        for name in ("check-unused-sessions", "unused-session-lifetime", "session-token-expiration",
                     "websocket-max-message-size"):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be a positive number")
        if self["log-level"] not in logs.LEVELS:
            raise usage.UsageError(f"--log-level must be one of {', '.join(logs.LEVELS)}")
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format must be text or json")
        if not 0 <= self["websocket-compression-level"] <= 9:
            raise usage.UsageError("--websocket-compression-level must be 0 (off) to 9")
        if self["no-websocket-compression"]:
            self["websocket-compression-level"] = 0
        if self["stats-log-frequency"] < 0:
            raise usage.UsageError("--stats-log-frequency must be 0 (off) or a positive number of milliseconds")
        if self["log-format"] == "json" and getattr(self, "parent", None) is not None:
            # twistd builds its log observer from its own options after ours are parsed.
            self.parent["logger"] = "docsyncd.logs.json_observer"
        if self["session-ids"] not in ("unsigned", "signed", "external-signed"):
            raise usage.UsageError("--session-ids must be unsigned, signed or external-signed")
        self["secret-key"] = os.environ.get("DOCSYNC_SECRET_KEY") or os.environ.get("BOKEH_SECRET_KEY")
        if self["session-ids"] != "unsigned" and not self["secret-key"]:
            raise usage.UsageError(f"--session-ids {self['session-ids']} needs a secret key in DOCSYNC_SECRET_KEY (make one with `docsync secret`)")
        self["prefix"] = "/" + self["prefix"].strip("/") if self["prefix"].strip("/") else ""
        if not self["listen"]:
            endpoint = f"tcp:{self['port']}"
            if self["address"]:
                endpoint += f":interface={_escape_endpoint(self['address'])}"
            self["listen"] = [endpoint]
        if self["index"] and not os.path.isfile(self["index"]):
            raise usage.UsageError(f"--index {self['index']}: no such file")
        if self["show"] and all(e.startswith("unix:") for e in self["listen"]):
            raise usage.UsageError("--show needs a TCP or TLS listener to open in a browser, not only unix: sockets")
        self.check_guard_options()
        from .workers import check_worker_options  # --workers: workers.py

        check_worker_options(self)


def make_service(options: Options, reactor: Any) -> service.MultiService:
    """The daemon's service tree for ``options``, listening through ``reactor``."""
    if options.get("workers") is not None:  # a parent routing to worker processes: workers.py
        from .workers import make_supervisor_service

        return make_supervisor_service(options, reactor)
    from .apps import load_apps
    from .server import build_site

    logs.set_level(options["log-level"])
    apps = load_apps(options["apps"], options["app-argv"])

    from .guard import GuardError
    from .store import StoreError

    try:
        site, apps_service = build_site(apps, options, reactor)
    except (StoreError, GuardError) as e:
        raise SystemExit(f"docsync: {e}")
    top = service.MultiService()
    apps_service.setServiceParent(top)
    for endpoint in options["listen"]:
        try:
            listener = strports.service(endpoint, site, reactor=reactor)
        except Exception as e:  # unknown endpoint type, missing key file, bad port...
            raise SystemExit(f"docsync: --listen {endpoint}: {e}")
        listener.setServiceParent(top)
    if options.get("show"):
        from .urls import BrowserOpener

        BrowserOpener(top, options["prefix"], [app.name for app in apps] or [""], reactor).setServiceParent(top)  # [""]: the empty app at /
    return top


def exit_zero_on_sigterm(reactor: Any) -> None:
    """Make SIGTERM an orderly stop that exits 0.

    SIGTERM is how systemd and init scripts stop a daemon.  Twisted's own
    handler stops the reactor too, but twistd then re-raises the signal, so
    the process would end "killed by SIGTERM" after a clean shutdown.
    """

    def stop(signum: int, frame: Any) -> None:
        log.info("SIGTERM received: closing listeners, discarding sessions, unloading apps")
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)


def makeService(options: Options) -> service.MultiService:
    from twisted.internet import reactor

    top = make_service(options, reactor)
    # After Twisted installed its signal handlers, replace the SIGTERM one.
    reactor.callWhenRunning(exit_zero_on_sigterm, reactor)
    return top
