"""TLS with Twisted's ssl: endpoint: `--listen ssl:PORT:privateKey=key.pem:certKey=cert.pem`.

A CA and a server certificate for "localhost" are made in tmp with the
cryptography package.  Chromium runs the app over https and wss; Python
clients that trust only that CA check the certificate and its host name.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from e2e_support import (EXAMPLES, PAGE_TIMEOUT_MS, TWISTD_CMD, BokehPage, daemon_env, free_port, http_ok,
                         press_me_clicks)

pytestmark = pytest.mark.e2e


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, and a server key and certificate for DNS:localhost signed by it, as PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docsyncd test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "key": directory / "key.pem", "cert": directory / "cert.pem"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def _https_ok(port: int, ca: Path) -> bool:
    try:
        conn = http.client.HTTPSConnection("localhost", port, timeout=2,
                                           context=ssl.create_default_context(cafile=str(ca)))
        conn.request("GET", "/press_me/metadata")
        return conn.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture
def tls_server(spawn, tmp_path):
    """docsyncd on an ssl: endpoint with the tmp CA's localhost certificate (and plain tcp: too); (port, pki paths)."""
    pki = make_pki(tmp_path)
    port, plain_port = free_port(), free_port()
    endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={pki['key']}:certKey={pki['cert']}"
    cmd = [*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--listen", endpoint,
           "--listen", f"tcp:{plain_port}:interface=127.0.0.1", "--app", str(EXAMPLES / "press_me.py")]
    spawn(cmd, lambda: _https_ok(port, pki["ca"]), port=port)
    assert http_ok(f"http://127.0.0.1:{plain_port}/press_me/metadata"), "the tcp: listener beside ssl:"
    return port, pki


@pytest.mark.timeout(60)
def test_chromium_runs_the_app_over_https_and_wss(tls_server, browser):
    """Chromium loads the app over https, its websocket is wss, and clicks bring Python's data back."""
    port, _ = tls_server
    context = browser.new_context(ignore_https_errors=True)  # Chromium does not know the tmp CA
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = BokehPage(context.new_page())
        websockets = []
        page.page.on("websocket", lambda ws: websockets.append(ws.url))
        page.open(f"https://localhost:{port}/press_me")
        assert press_me_clicks(page, 2) == ["0", "1"]
        assert websockets == [f"wss://localhost:{port}/press_me/ws"]
        assert page.page.evaluate("() => location.protocol") == "https:"
    finally:
        context.close()


def test_certificate_verified_against_the_ca(tls_server):
    """A client trusting only the CA gets the page from localhost; one expecting another host name, or not trusting the CA, is refused."""
    port, pki = tls_server
    trusting = ssl.create_default_context(cafile=str(pki["ca"]))

    conn = http.client.HTTPSConnection("localhost", port, timeout=5, context=trusting)
    conn.request("GET", "/press_me")
    resp = conn.getresponse()
    assert resp.status == 200 and b"Bokeh" in resp.read()
    conn.close()

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname mismatch"):
            trusting.wrap_socket(raw, server_hostname="not-localhost.example")

    system_only = ssl.create_default_context()  # the system's CAs, not ours
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            system_only.wrap_socket(raw, server_hostname="localhost")


def test_alpn_is_pinned_to_http11(tls_server):
    """Offered h2 and http/1.1 by ALPN, docsyncd picks http/1.1, so websockets can upgrade over TLS."""
    port, pki = tls_server
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"


# Twisted's own client TLS (service_identity checks the name): an Agent with
# BrowserLikePolicyForHTTPS trusting only the CA, for localhost and for
# 127.0.0.1, a name the certificate does not carry.
TWISTED_CLIENT = """
import json, sys
from twisted.internet import defer, ssl, task
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody

async def main(reactor, port, ca_path):
    with open(ca_path, "rb") as f:
        ca = ssl.Certificate.loadPEM(f.read())
    agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=ca))
    result = {}
    for host in ("localhost", "127.0.0.1"):
        try:
            response = await agent.request(b"GET", f"https://{host}:{port}/press_me".encode())
            body = await readBody(response)
            result[host] = {"status": response.code, "bokeh": b"Bokeh" in body}
        except Exception as e:
            result[host] = {"error": repr(e)}
    print(json.dumps(result))

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, int(sys.argv[1]), sys.argv[2])))
"""


def test_twisted_client_checks_the_host_name(tls_server):
    """Twisted's Agent trusting only the CA gets the page from localhost and refuses 127.0.0.1, which the certificate does not name."""
    port, pki = tls_server
    out = subprocess.run([sys.executable, "-c", TWISTED_CLIENT, str(port), str(pki["ca"])], capture_output=True,
                         text=True, timeout=30, env=daemon_env())
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["localhost"] == {"status": 200, "bokeh": True}
    error = result["127.0.0.1"].get("error", "")
    assert "service_identity" in error and "IPAddressMismatch" in error, result
    # And the certificate really lacks that name (so the refusal is the name check).
    cert = x509.load_pem_x509_certificate(pki["cert"].read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") not in names.get_values_for_type(x509.IPAddress)
