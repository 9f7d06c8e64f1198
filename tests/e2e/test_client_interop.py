"""Interoperability with real peers: docsyncd.client against ``bokeh serve``, ``bokeh.client`` against
docsyncd, and docsyncd.client over wss:// with a custom CA (service-identity checks the certificate)."""

from __future__ import annotations

import json
import ssl
import urllib.request

import pytest

from client_support import client_env, docsync_only, last_json, run_client, start_docsync, stop_quietly
from e2e_support import TWISTD_CMD, free_port, start_process
from test_deploy_tls import make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures(docsync_only.__name__)]


@pytest.mark.timeout(60)
def test_docsyncd_client_against_bokeh_serve(serve, tmp_path):
    """docsyncd.client pulls a bokeh serve app's session, drives its Python callback, and pushes a document another client pulls."""
    dashboard = serve("dashboard", kind="bokeh")
    result = last_json(run_client(f"""
        import json
        from bokeh.document import Document
        from bokeh.models import Slider
        from docsyncd.client import pull_session, push_session

        url = "{dashboard.url}"
        result = {{}}
        with pull_session(url=url) as app:
            doc = app.document
            result["title"] = doc.title
            result["version"] = app.request_server_info()["version_info"]["server"]
            doc.get_model_by_name("dashboard_slider").value = 4
            app.force_roundtrip()  # bokeh serve's PATCH-DOC from the Python callback came before the reply
            result["div"] = doc.get_model_by_name("dashboard_div").text

        mine = Document()
        mine.add_root(Slider(start=0, end=10, value=3, name="pushed"))
        with push_session(mine, url=url) as pusher, pull_session(session_id=pusher.id, url=url) as puller:
            result["pulled"] = puller.document.get_model_by_name("pushed").value
            mine.get_model_by_name("pushed").value = 8
            pusher.force_roundtrip()
            puller.force_roundtrip()
            result["synced"] = puller.document.get_model_by_name("pushed").value
        print(json.dumps(result))
        """, tmp_path, client_env(dashboard.port)))
    assert result["title"] == "Dashboard" and result["version"]
    assert result["div"] == "scale: 4"
    assert result["pulled"] == 3 and result["synced"] == 8


@pytest.mark.timeout(60)
def test_bokeh_client_against_docsyncd(tmp_path, page):
    """bokeh.client pushes to docsyncd's empty app and pulls back; its changes, partial columns too, reach a browser."""
    server = start_docsync(tmp_path, "--store", "memory")
    try:
        result = last_json(run_client(f"""
            import json
            from bokeh.client import pull_session, push_session
            from bokeh.document import Document
            from bokeh.models import ColumnDataSource, Slider
            from docsyncd.client import pull_session as docsyncd_pull

            url = "{server.base_url}/"
            doc = Document()
            doc.add_root(Slider(start=0, end=10, value=2, name="slider"))
            doc.add_root(ColumnDataSource(data=dict(x=[1, 2, 3], y=[4, 5, 6]), name="source"))
            result = {{}}
            pusher = push_session(doc, session_id="from-bokeh-client", url=url)
            puller = pull_session(session_id="from-bokeh-client", url=url)
            result["pulled"] = puller.document.get_model_by_name("slider").value
            doc.get_model_by_name("slider").value = 7
            doc.get_model_by_name("source").data["y"] = [40, 50, 60]  # bokeh.client sends only column y
            pusher.force_roundtrip()
            puller.pull()
            result["after"] = puller.document.get_model_by_name("slider").value
            result["info"] = pusher.request_server_info()["version_info"]["bokeh"]
            with docsyncd_pull(session_id="from-bokeh-client", url=url) as ours:
                result["ours"] = dict(ours.document.get_model_by_name("source").data)
            print(json.dumps(result))
            pusher.close()
            puller.close()
            """, tmp_path, client_env(server.port)))
        assert result["pulled"] == 2 and result["after"] == 7 and result["info"]
        assert result["ours"] == {"x": [1, 2, 3], "y": [40, 50, 60]}, "docsyncd kept the columns bokeh.client did not send"

        page.open(f"{server.base_url}/?bokeh-session-id=from-bokeh-client")
        assert page.get("slider", "value") == 7
        assert page.column("source", "x") == [1, 2, 3] and page.column("source", "y") == [40, 50, 60]
        with urllib.request.urlopen(f"{server.base_url}/published.json") as resp:
            assert json.load(resp)["published"] == [], "bokeh.client's push is a live session, not a published one"
    finally:
        stop_quietly(server)


@pytest.mark.timeout(60)
def test_wss_verifies_the_certificate(tmp_path):
    """Over wss:// the client trusts a given CA and refuses a server whose certificate the system does not trust."""
    pki = make_pki(tmp_path)
    port = free_port()
    endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={pki['key']}:certKey={pki['cert']}"
    trusting = ssl.create_default_context(cafile=str(pki["ca"]))

    def listing_over_https():
        try:
            with urllib.request.urlopen(f"https://localhost:{port}/published.json", context=trusting, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    server = start_process([*TWISTD_CMD, "-n", "--pidfile=", "docsync", "--listen", endpoint, "--store", "memory"],
                           tmp_path / "tls.log", listing_over_https, port=port)
    try:
        result = last_json(run_client(f"""
            import json
            from bokeh.document import Document
            from bokeh.models import Div
            from docsyncd.client import pull_session, push_session

            url, result = "https://localhost:{port}/", {{}}
            doc = Document()
            doc.add_root(Div(text="over TLS", name="div"))
            with push_session(doc, url=url, ca_certs="{pki['ca']}") as pusher:
                with pull_session(session_id=pusher.id, url=url.replace("https", "wss") + "ws",
                                  ca_certs="{pki['ca']}") as puller:
                    result["pulled"] = puller.document.get_model_by_name("div").text
            try:
                push_session(Document(), url=url)  # the system's CAs do not include the test CA
            except Exception as e:
                result["untrusted"] = f"{{type(e).__name__}}: {{e}}"
            print(json.dumps(result))
            """, tmp_path, client_env(port)))
        assert result["pulled"] == "over TLS"
        assert "certificate verify failed" in result["untrusted"], result
    finally:
        stop_quietly(server)
