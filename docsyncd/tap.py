"""``twistd docsync``: command-line options and the service they describe.

Option names follow ``bokeh serve`` where it has them; times given in
milliseconds there are milliseconds here too.  ``makeService`` builds the
whole service tree up front; ``make_service(options, reactor)`` is the seam
tests use with a MemoryReactor.

Tests: tests/test_tap.py; --dev in tests/test_dev.py, --show in tests/test_cli.py; what an idle daemon imports in
tests/test_idle_imports.py
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from . import logs, reactors
from .guard_options import GuardOptions
from .listeners import add_listeners
from .threads import DEFAULT_NUM_THREADS

log = Logger(observer=logs.observer)

DEFAULT_PORT = 5006


def escape_endpoint(value: str) -> str:
    """``value`` as one field of a Twisted endpoint string (``:``, ``=`` and ``\\`` escaped)."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


#: What both ``twistd docsync --help`` and ``docsync serve --help`` say first.
DESCRIPTION = (
    "Serve Bokeh applications (a .py module or a directory with main.py), "
    "each at /<name>, keeping every session's document in sync with BokehJS "
    "over a websocket. Times are in milliseconds, as in `bokeh serve`. Runs on the asyncio reactor, "
    "so app coroutines may await asyncio"
)


class Options(GuardOptions, usage.Options):  # proxy, access and limit options: guard_options.py
    synopsis = "[options] [--app PATH ...] [--args ARG ...]"
    #: Whether at least one --app is required; without one, twistd docsync serves
    #: the empty app at / (as bokeh serve without files), for clients to push to.
    require_app = False
    longdesc = DESCRIPTION + ", unless twistd's -r (given before `docsync`) names another reactor."

    optParameters = [
        ["port", "p", DEFAULT_PORT, "TCP port to listen on (sugar for --listen tcp:PORT).", int],
        ["address", "a", "", "Interface to listen on with --port (default: all)."],
        ["prefix", None, "", "URL prefix under which every app is served, e.g. /bokeh."],
        ["keep-alive", None, 37000, "Websocket ping interval in ms (0 disables).", int],
        ["check-unused-sessions", None, 17000, "How often to look for unused sessions, in ms.", int],
        ["unused-session-lifetime", None, 15000, "How long a session without connections lives, in ms.", int],
        ["num-threads", None, None, "Threads per process that run the apps' slow sync callbacks, each holding "
                                    "its session's lock, so they do not stall other sessions; also Panel's "
                                    "nthreads, as with panel serve --num-threads (0: all on the reactor thread; "
                                    "default: %d)." % DEFAULT_NUM_THREADS, int],
        ["shutdown-grace", None, 5000, "On SIGTERM, ms a session's callbacks may keep running before they are "
                                       "cancelled and the session destroyed anyway (0: at once).", int],
        ["session-token-expiration", None, 300, "Seconds a page's session token may wait before its websocket opens.", int],
        ["session-ids", None, None, "unsigned; signed with DOCSYNC_SECRET_KEY (BOKEH_SECRET_KEY also read); or "
                                    "external-signed: signed, and only ids made elsewhere are accepted (default: "
                                    "signed if BOKEH_SIGN_SESSIONS is true, else unsigned)."],
        ["websocket-max-message-size", None, 20 * 1024 * 1024, "Largest websocket message accepted, in bytes.", int],
        ["websocket-compression-level", None, 1, "zlib level (1 fastest to 9 smallest) of permessage-deflate, "
                                                 "used when a client offers it (0: off).", int],
        ["log-level", None, None, f"One of {', '.join(logs.LEVELS)} (default: BOKEH_PY_LOG_LEVEL, else info)."],
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
        ["dev", None, "Watch each app's .py, .html, .css and .yaml files and the modules it imports from "
                      "outside the Python installation; on a change, reload the app and the open pages "
                      "(development only)."],
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
        """A host[:port] whose pages may open websockets (repeatable; * for any; replaces the default, this server
        itself; BOKEH_ALLOW_WS_ORIGIN, when set, replaces this, as in bokeh serve)."""
        self["allow-websocket-origin"].append(host)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Everything after ``--args`` is the apps' argv, even when it looks like an option."""
        options = list(sys.argv[1:] if options is None else options)
        self["argv"] = list(options)  # as given: --workers starts its workers with them (workers.py)
        if "--args" in options:
            at = options.index("--args")
            self["app-argv"] = options[at + 1:]
            options = options[:at + 1]
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:  # not under twistd: the caller reports it
                raise
            # twistd would print its whole usage (over a hundred lines) above the error.
            sys.stderr.write(f"twistd docsync: {e} (see twistd docsync --help)\n")
            raise SystemExit(2) from None

    def parseArgs(self, *argv: str) -> None:
        if argv:
            raise usage.UsageError(f"unexpected argument {argv[0]!r}; apps are given with --app, their arguments after --args")

    def postOptions(self) -> None:
        if getattr(self, "parent", None) is not None:  # a subcommand of twistd or twist: reactors.py
            reactors.install_asyncio_reactor()
        if not self["apps"] and self.require_app:
            raise usage.UsageError("give at least one app with --app PATH (a .py module or a directory with main.py)")
        from .bokeh_settings import apply_bokeh_settings  # BOKEH_* and DOCSYNC_* defaults: one place

        apply_bokeh_settings(self)
        if self["store"] not in (None, "memory"):
            self["store"] = os.path.abspath(os.path.expanduser(self["store"]))  # before twistd changes directory
        if self["keep-alive"] < 0:
            raise usage.UsageError("--keep-alive must be 0 (off) or a positive number of milliseconds")
        if self["num-threads"] is None:
            self["num-threads"] = DEFAULT_NUM_THREADS
        elif self["num-threads"] < 0:
            raise usage.UsageError("--num-threads must be 0 (callbacks on the reactor thread) or a number of threads")
        if self["shutdown-grace"] < 0:
            raise usage.UsageError("--shutdown-grace must be 0 (cancel at once) or a positive number of milliseconds")
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
        if self["session-ids"] != "unsigned" and not self["secret-key"]:
            raise usage.UsageError(f"--session-ids {self['session-ids']} needs a secret key in DOCSYNC_SECRET_KEY (make one with `docsync secret`)")
        self["prefix"] = "/" + self["prefix"].strip("/") if self["prefix"].strip("/") else ""
        if not self["listen"]:
            endpoint = f"tcp:{self['port']}"
            if self["address"]:
                endpoint += f":interface={escape_endpoint(self['address'])}"
            self["listen"] = [endpoint]
        if self["index"] and not os.path.isfile(self["index"]):
            raise usage.UsageError(f"--index {self['index']}: no such file")
        if self["show"] and all(e.startswith("unix:") for e in self["listen"]):
            raise usage.UsageError("--show needs a TCP or TLS listener to open in a browser, not only unix: sockets")
        self.check_guard_options()
        if self.get("workers") is not None:  # only then: one process never loads workers.py (test_idle_imports.py)
            from .workers import check_worker_options

            check_worker_options(self)


def make_service(options: Options, reactor: Any) -> service.MultiService:
    """The daemon's service tree for ``options``, listening through ``reactor``; it logs each app's URL
    (and opens it, with ``--show``) once listening."""
    from .apps import app_name
    from .urls import BrowserOpener, UrlAnnouncer

    if options.get("workers") is not None:  # a parent routing to worker processes: workers.py
        from .workers import make_supervisor_service

        top = make_supervisor_service(options, reactor)
    else:
        top = _single_process_service(options, reactor)
    names = [app_name(path) for path in options["apps"]] or [""]  # [""]: the empty app at /
    UrlAnnouncer(top, options["prefix"], names).setServiceParent(top)
    if options.get("show"):
        BrowserOpener(top, options["prefix"], names, reactor).setServiceParent(top)
    return top


def _single_process_service(options: Options, reactor: Any) -> service.MultiService:
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
    add_listeners(top, options["listen"], site, reactor)
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
    from twisted.internet import reactor  # installed by postOptions: reactors.py

    from .sessions import collect_as_a_server

    top = make_service(options, reactor)
    # After Twisted installed its signal handlers, replace the SIGTERM one.
    reactor.callWhenRunning(exit_zero_on_sigterm, reactor)
    reactor.callWhenRunning(collect_as_a_server)  # after start-up's imports and the apps' on_server_loaded
    return top
