"""Wiring: from loaded apps and options to a twisted.web Site and the apps service.

Kept apart from ``tap`` so that tests and the ``docsync`` command build the
same server without going through twistd.

Tests: tests/test_server.py; the --dev wiring in tests/test_dev.py; the store,
published documents and the empty app at / in tests/test_store.py
"""

from __future__ import annotations

from typing import Any

from twisted.web import http, server

from . import bokeh_tuning
from .apps import LoadedApp, empty_app
from .callbacks import accept_coroutine_callbacks
from .protocol import SyncFactory
from .security import OriginPolicy, TokenPolicy, machine_names
from .metrics import REGISTRY, HealthResource, MetricsResource, StatsLogService, watch_managers
from .service import AppsService
from .publishing import PublishPolicy
from .published import AllPublished, EmptyAppRoot, PublishedList, entries
from .sessions import SessionManager
from .store import IDocumentStore, open_store
from .threads import DEFAULT_NUM_THREADS, CallbackThreads, thread_local_curdocs
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


def build_site(apps: list[LoadedApp], options: Any, reactor: Any,
               store: IDocumentStore | None = None) -> tuple[server.Site, AppsService]:
    """The Site serving ``apps`` and the service running their lifecycle (and, with ``--dev``, their file watchers).

    No apps: the empty app at ``/``, as ``bokeh serve`` without files.  Published
    documents live in ``store`` (default: the one ``--store`` names; ``StoreError``
    when it cannot be opened).
    """
    accept_coroutine_callbacks()
    if not options.get("no-bokeh-tuning"):
        bokeh_tuning.apply()
    store = store if store is not None else open_store(options.get("store"))
    at_root = not apps
    apps = apps or [empty_app()]
    pages: list[tuple[SessionManager, str]] = []  # for the listings of published documents
    prefix = options["prefix"]
    secret = options["secret-key"]
    secret_key = secret.encode("utf-8") if isinstance(secret, str) else secret
    signed = options["session-ids"] != "unsigned"  # signed, or external-signed: ids only from elsewhere
    session_settings = SessionSettings(secret_key, signed, options["session-token-expiration"],
                                       generate_ids=options["session-ids"] != "external-signed")
    session_settings.owns = options.get("owns-session-id")  # a --workers process mints ids it owns: worker.py
    origins = OriginPolicy(list(options["allow-websocket-origin"]), credentials=bool(options.get("autoload-credentials")),
                           default_names=machine_names() + list(options.get("allow-host") or []))
    tokens = TokenPolicy(secret_key, signed)
    static_files = StaticFiles()
    publish_policy = PublishPolicy.from_options(options)  # owners and their limits: publishing.py
    threads = CallbackThreads(reactor, options.get("num-threads", DEFAULT_NUM_THREADS))  # this process's pool
    if threads.enabled:
        thread_local_curdocs()

    index = None
    if not options["disable-index"]:
        index = Index(prefix, [] if at_root else [f"/{app.name}" for app in apps], options["index"],
                      published=lambda: entries(pages))
    root = Root(index, static_files)
    factories = []
    dev_watchers = []
    for app in apps:
        manager = SessionManager(app, reactor, reactor, store=store, policy=publish_policy, threads=threads)
        factory = SyncFactory(
            manager, reactor, origins, tokens,
            keep_alive=options["keep-alive"] / 1000.0,
            max_message_size=options["websocket-max-message-size"],
            compression_level=options["websocket-compression-level"],  # 0 with --no-websocket-compression
        )
        factories.append(factory)
        url = f"{prefix}/{app.name}"
        page_args = (manager, factory, static_files, session_settings, url, prefix)
        if options.get("dev") and not at_root:  # reload on file changes: docsyncd/dev.py
            from .dev import AppWatcher, DevAppResource

            dev_watchers.append(AppWatcher(manager, options["app-argv"], reactor))
            page = DevAppResource(dev_watchers[-1], *page_args)
        else:
            from .lazy import page_class  # --lazy-documents, --workers: lazy.py

            page = page_class(options)(*page_args)
        pages.append((manager, url))
        page.putChild(b"published", PublishedList(manager, url))
        if at_root:  # the app's page and its ws, autoload.js, metadata and published at /
            for name, child in page.children.items():
                root.putChild(name, child)
            root.index = EmptyAppRoot(page, index)
        else:
            root.putChild(app.name.encode(), page)
    root.putChild(b"published.json", AllPublished(pages))

    site = DocsyncSite(mount(prefix, root), reactor=reactor)
    apps_service = AppsService(
        factories, reactor,
        check_interval=options["check-unused-sessions"] / 1000.0,
        unused_lifetime=options["unused-session-lifetime"] / 1000.0,
        shutdown_grace=options.get("shutdown-grace", 5000) / 1000.0,
        threads=threads,
    )
    managers = [f.manager for f in factories]
    watch_managers(REGISTRY, managers)
    root.putChild(b"health", HealthResource(managers))
    root.putChild(b"metrics", MetricsResource(REGISTRY))
    from .guard import guard_site  # --use-xheaders, --allow-host, --auth-module and the limits: guard.py

    guard_site(site, root, factories, session_settings, options, reactor)
    for watcher in dev_watchers:
        watcher.setServiceParent(apps_service)
    if options.get("stats-log-frequency"):
        StatsLogService(options["stats-log-frequency"] / 1000.0, managers, reactor).setServiceParent(apps_service)
    return site, apps_service
