"""Where a running server can be reached: the URLs the daemon logs at start-up and ``--show`` opens.

The URLs come from the ports actually listening (so ``--port 0`` and systemd
sockets give real numbers): ``http://<host>:<port><prefix>/<app>``, with
``https`` for ``ssl:`` endpoints and ``localhost`` for the wildcard address.
Unix sockets have no URL a browser can open.

Tests: tests/test_cli.py
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import logs

log = Logger(observer=logs.observer)

_WILDCARDS = ("", "0.0.0.0", "::")


def _endpoint_services(top: service.IService) -> list[StreamServerEndpointService]:
    found = []
    if isinstance(top, StreamServerEndpointService):
        found.append(top)
    for child in getattr(top, "services", []):
        found.extend(_endpoint_services(child))
    return found


def base_url(address: Any, secure: bool = False) -> str | None:
    """``http://host:port`` for a listening address, None when a browser cannot reach it."""
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return None
    host = address.host
    if host in _WILDCARDS:
        host = "localhost"
    elif isinstance(address, IPv6Address):
        host = f"[{host}]"
    return f"{'https' if secure else 'http'}://{host}:{address.port}"


def listening_base_urls(top: service.IService) -> defer.Deferred:
    """Deferred list of ``scheme://host:port`` for every listener of a started service tree."""

    def port_of(svc: StreamServerEndpointService) -> defer.Deferred:
        waiting = getattr(svc, "_waitingForPort", None)
        if waiting is None:
            return defer.succeed(None)
        d = defer.Deferred()

        def got(port: Any) -> Any:
            d.callback(None if isinstance(port, Failure) else port)
            return port  # the service keeps its own result

        waiting.addBoth(got)
        return d

    services = _endpoint_services(top)

    def urls(ports: list[Any]) -> list[str]:
        found = []
        for svc, port in zip(services, ports):
            url = None if port is None or not hasattr(port, "getHost") else base_url(
                port.getHost(), isinstance(svc.endpoint, SSL4ServerEndpoint))
            if url and url not in found:
                found.append(url)
        return found

    return defer.gatherResults([port_of(s) for s in services]).addCallback(urls)


def app_urls(base: str, prefix: str, names: list[str]) -> list[str]:
    return [f"{base}{prefix}/{name}" for name in names]


def _bokeh_browser() -> Any:
    from bokeh.util.browser import get_browser_controller

    return get_browser_controller()


class UrlAnnouncer(service.Service):
    """Once the server listens, log the URL of each app: ``press_me running at http://localhost:5006/press_me``.

    This is the line a new user looks for after ``twistd -n docsync`` or
    ``docsync serve``; without an app, the empty document at ``/`` that
    Python clients push to is announced instead.
    """

    def __init__(self, top: service.IService, prefix: str, names: list[str]):
        self.top = top
        self.prefix = prefix
        self.names = names

    def startService(self) -> None:
        super().startService()
        listening_base_urls(self.top).addCallback(self._announce)

    def _announce(self, bases: list[str]) -> None:
        for base in bases:
            for name in self.names:
                url = app_urls(base, self.prefix, [name])[0]
                if name:
                    log.info("{app} running at {url}", app=name, url=url)
                else:
                    log.info("no app given: an empty document for Python clients to push to at {url}", url=url)


class BrowserOpener(service.Service):
    """``--show``: once the server listens, open each app in a web browser.

    The browser is Bokeh's choice, as for bokeh serve --show: ``BOKEH_BROWSER``
    (``none``: none), else the standard library's (which honours ``$BROWSER``).
    """

    def __init__(self, top: service.IService, prefix: str, names: list[str], reactor: Any,
                 open_url: Callable[[str], Any] | None = None):
        self.top = top
        self.prefix = prefix
        self.names = names
        self.reactor = reactor
        self.open_url = open_url or _bokeh_browser().open  # looked up now, so that tests may patch webbrowser

    def startService(self) -> None:
        super().startService()
        listening_base_urls(self.top).addCallback(self._open).addErrback(
            lambda f: log.failure("--show: could not open a browser", f))

    def _open(self, bases: list[str]) -> None:
        if not bases:
            log.warn("--show: no http(s) listener, so no page to open")
            return
        for url in app_urls(bases[0], self.prefix, self.names):
            log.info("--show: opening {url}", url=url)
            # Opening may wait for the browser; keep the reactor free.
            self.reactor.callInThread(self._open_in_thread, url)

    def _open_in_thread(self, url: str) -> None:
        # webbrowser's open answers False when it finds no browser to run (a server without a desktop).
        if not self.open_url(url):
            self.reactor.callFromThread(
                log.warn, "--show: no web browser found to open {url} (set $BROWSER to choose one); "
                          "open it yourself", url=url)
