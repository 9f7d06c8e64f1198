"""Helpers for the tests of the proxy, access and limit options (test_proxy, test_guard, test_auth, test_limits, test_files).

Requests are written by hand so that tests control every header (the Host
header included) and the client's address.
"""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.address import IPv4Address
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from unit_support import BokehClient, InMemoryServer, RawClient, Response, _drain

#: An app that shows the request its session was made from: "remote_ip|protocol|host".
FACTS_APP = """
from bokeh.io import curdoc
from bokeh.models import Div

request = curdoc().session_context.request
curdoc().add_root(Div(name="facts", text="|".join([request.remote_ip, request.protocol, request.host])))
"""


def connect_from(server: InMemoryServer, client: Any, ip: str = "127.0.0.1", port: int = 40000) -> iosim.IOPump:
    """Like ``InMemoryServer.connect``, from the client address ``ip``."""
    server_protocol = server.site.buildProtocol(IPv4Address("TCP", ip, port))
    server_io = iosim.FakeTransport(server_protocol, True, hostAddress=IPv4Address("TCP", "127.0.0.1", 5006),
                                    peerAddress=IPv4Address("TCP", ip, port))
    client_io = iosim.FakeTransport(client, False, hostAddress=IPv4Address("TCP", ip, port),
                                    peerAddress=IPv4Address("TCP", "127.0.0.1", 5006))
    return iosim.connect(server_protocol, server_io, client, client_io, clock=server.clock)


def parse_response(data: bytes) -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return Response(int(status_line.split()[1]), headers, body)


def send(server: InMemoryServer, path: str, headers: dict[str, str] | None = None, method: str = "GET",
         host: str | None = "localhost:5006", ip: str = "127.0.0.1", body: bytes = b"") -> Response:
    """One HTTP/1.0 request with exactly these headers (Host unless None), from ``ip``."""
    lines = [f"{method} {path} HTTP/1.0"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    client = RawClient()
    pump = connect_from(server, client, ip)
    client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    _drain(pump)
    return parse_response(client.data)


def websocket(server: InMemoryServer, app: str, token: str, headers: dict[str, str] | None = None,
              origin: str | None = None, ip: str = "127.0.0.1", host: str = "localhost:5006") -> tuple[BokehClient, iosim.IOPump]:
    """A BokehClient on ``/<app>/ws`` with extra handshake headers, from ``ip``."""
    factory = WebSocketClientFactory(f"ws://{host}/{app}/ws", protocols=["bokeh", token], origin=origin,
                                     headers=headers or {}, reactor=server.clock)
    factory.protocol = BokehClient
    client = factory.buildProtocol(None)
    pump = connect_from(server, client, ip)
    pump.flush()
    return client, pump


def raw_upgrade(server: InMemoryServer, app: str, token: str, headers: dict[str, str] | None = None,
                ip: str = "127.0.0.1", host: str = "localhost:5006", split_protocols: bool = False) -> Response:
    """A websocket upgrade request by hand; the server's answer (101 or a refusal).

    ``split_protocols`` sends ``bokeh`` and the token as two Sec-WebSocket-Protocol lines.
    """
    protocols = ["bokeh", token] if split_protocols else [f"bokeh, {token}"]
    lines = [f"GET /{app}/ws HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"Sec-WebSocket-Protocol: {p}" for p in protocols)]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    client = RawClient()
    pump = connect_from(server, client, ip)
    client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    _drain(pump)
    return parse_response(client.data)


class ServerTestCase(SynchronousTestCase):
    """Starts in-memory servers and stops them at the end of the test."""

    @pytest.fixture(autouse=True)
    def _tmp_path(self, tmp_path):
        self.tmp_path = tmp_path

    def start_server(self, *paths: str, args: list[str] | tuple[str, ...] = ()) -> InMemoryServer:
        return InMemoryServer(list(paths), list(args)).start_for(self)

    def facts(self, server: InMemoryServer, app: str, session_id: str) -> str:
        return server.managers[app].get(session_id).document.get_model_by_name("facts").text
