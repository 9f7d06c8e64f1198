"""Wiring: from loaded apps and options to a twisted.web Site and the apps service.

Kept apart from ``tap`` so that tests and the ``docsync`` command build the
same server without going through twistd.

Tests: tests/test_server.py; the --dev wiring in tests/test_dev.py
"""

from __future__ import annotations

from typing import Any

from twisted.web import http, server

from .apps import LoadedApp
from .callbacks import accept_coroutine_callbacks
from .protocol import SyncFactory
from .security import OriginPolicy, TokenPolicy
from .service import AppsService
from .sessions import SessionManager
from .web import AppResource, Index, Root, SessionSettings, StaticFiles, mount


class NoDelayHTTPChannel(http.HTTPChannel):
    """HTTP/1.1 only, small writes sent at once.

    Without TCP_NODELAY every small message after the first waits ~40 ms for
    the peer's delayed ACK.  Plain HTTP/1.1 (no h2 negotiation) because
    websockets cannot upgrade an HTTP/2 connection.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass  # not a TCP socket (unix socket)


class DocsyncSite(server.Site):
    """A Site that speaks HTTP/1.1 only, also when TLS offers ALPN."""

    protocol = NoDelayHTTPChannel

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]


def build_site(apps: list[LoadedApp], options: Any, reactor: Any) -> tuple[server.Site, AppsService]:
    """The Site serving ``apps`` and the service running their lifecycle (and, with ``--dev``, their file watchers)."""
    accept_coroutine_callbacks()
    prefix = options["prefix"]
    secret = options["secret-key"]
    secret_key = secret.encode("utf-8") if isinstance(secret, str) else secret
    signed = options["session-ids"] == "signed"
    session_settings = SessionSettings(secret_key, signed, options["session-token-expiration"])
    origins = OriginPolicy(list(options["allow-websocket-origin"]))
    tokens = TokenPolicy(secret_key, signed)
    static_files = StaticFiles()

    index = None
    if not options["disable-index"]:
        index = Index(prefix, [f"/{app.name}" for app in apps], options["index"])
    root = Root(index, static_files)
    factories = []
    dev_watchers = []
    for app in apps:
        manager = SessionManager(app, reactor, reactor)
        factory = SyncFactory(
            manager, reactor, origins, tokens,
            keep_alive=options["keep-alive"] / 1000.0,
            max_message_size=options["websocket-max-message-size"],
        )
        factories.append(factory)
        url = f"{prefix}/{app.name}"
        page_args = (manager, factory, static_files, session_settings, url, prefix)
        if options.get("dev"):  # reload on file changes: docsyncd/dev.py
            from .dev import AppWatcher, DevAppResource

            dev_watchers.append(AppWatcher(manager, options["app-argv"], reactor))
            page = DevAppResource(dev_watchers[-1], *page_args)
        else:
            page = AppResource(*page_args)
        root.putChild(app.name.encode(), page)

    site = DocsyncSite(mount(prefix, root), reactor=reactor)
    apps_service = AppsService(
        factories, reactor,
        check_interval=options["check-unused-sessions"] / 1000.0,
        unused_lifetime=options["unused-session-lifetime"] / 1000.0,
    )
    if dev_watchers:
        from .dev import with_watchers

        return site, with_watchers(apps_service, dev_watchers)
    return site, apps_service
