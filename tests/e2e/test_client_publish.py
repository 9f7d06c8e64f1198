"""Published documents against the real daemon: examples/publish.py, SIGKILL and restart, Chromium, deletion."""

from __future__ import annotations

import json
import sqlite3

import pytest

from client_support import (ClientProcess, client_env, docsync_only, last_json, opened_url, run_client,
                            start_docsync, stop_quietly)
from e2e_support import EXAMPLES, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures(docsync_only.__name__)]

PULL_JSON = """
import json
from docsyncd.client import pull_session
with pull_session(session_id="line") as session:
    print(json.dumps(session.document.to_json(deferred=False), sort_keys=True))
"""


def stored_document(store_path, name="line"):
    """The store's copy of a published document, read from the file as another process would."""
    db = sqlite3.connect(store_path)
    try:
        row = db.execute("SELECT doc FROM published WHERE app = '' AND name = ?", (name,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def stored_slider_value(store_path, name="line"):
    doc = stored_document(store_path, name)
    models = doc["roots"][0]["attributes"]["children"] if doc else []
    return next((m["attributes"].get("value") for m in models if m["attributes"].get("name") == "slider"), None)


def attribute_values(node, attr):
    """Every value of ``attr`` in a document's JSON (a model's ``{"value": v}`` read as v)."""
    if isinstance(node, list):
        return [v for item in node for v in attribute_values(item, attr)]
    if not isinstance(node, dict):
        return []
    found = []
    if isinstance(node.get("attributes"), dict) and attr in node["attributes"]:
        value = node["attributes"][attr]
        found.append(value.get("value") if isinstance(value, dict) else value)
    return found + [v for key, item in node.items() for v in attribute_values(item, attr)]


def without(node, attrs):
    """A document's JSON without the attributes named ``attrs`` (nor models' attributes left empty)."""
    if isinstance(node, list):
        return [without(item, attrs) for item in node]
    if isinstance(node, dict):
        kept = {k: without(v, attrs) for k, v in node.items() if k not in attrs}
        return {k: v for k, v in kept.items() if not (k == "attributes" and v == {})}
    return node


def differences(a, b, path="doc"):
    """Where two JSON values differ, as paths (for assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:300]]


def sigkill(server):
    server.proc.kill()
    server.proc.wait()


@pytest.mark.timeout(90)
def test_published_document_survives_sigkill(tmp_path, page):
    """A document published with output_server + show, and a browser's later change to it, survive SIGKILL."""
    store = tmp_path / "store.sqlite"
    server = start_docsync(tmp_path, "--store", str(store))
    port = server.port
    browser_log = tmp_path / "browser.txt"
    try:
        # Publish, then kill the daemon the moment the push is acknowledged: the write came before the OK.
        shown = run_client((EXAMPLES / "publish.py").read_text(), tmp_path, client_env(port, browser_log))
        assert shown.strip() == f"session page: {opened_url(browser_log)}"
        assert opened_url(browser_log) == f"http://localhost:{port}/?bokeh-session-id=line"
        sigkill(server)
        stored = stored_document(store)
        server = start_docsync(tmp_path, "--store", str(store), port=port, name="restarted")
        before = last_json(run_client(PULL_JSON, tmp_path, client_env(port)))
        assert before == stored, "the pulled document is the one stored before the OK"
        assert stored_slider_value(store) == 2

        # A browser opens the published document and moves its slider: the change is stored too.
        page.open(opened_url(browser_log))
        assert page.get("plot", "title")["type"] == "Title"
        page.set("slider", "value", 6)
        picked = "Published as 'line' (6 picked in a browser)"
        wait_until(lambda: stored_slider_value(store) == 6 and picked in attribute_values(stored_document(store), "text"),
                   message="the browser's slider value, and the title its JavaScript set, in the store")
        sigkill(server)

        server = start_docsync(tmp_path, "--store", str(store), port=port, name="restarted-again")
        after = last_json(run_client(PULL_JSON, tmp_path, client_env(port)))
        # The slider's value, and the title its JavaScript callback set in the browser, came back.
        changed = {"value": 6, "text": picked}
        for attr, new in changed.items():
            assert new not in attribute_values(before, attr) and new in attribute_values(after, attr), attr
        # So did the data ranges' start and end, which BokehJS computes when it draws and sends back.
        browser_made = {*changed, "start", "end"}
        before, after = without(before, browser_made), without(after, browser_made)
        assert after == before, f"otherwise the same document JSON should come back: {differences(before, after)}"
    finally:
        stop_quietly(server)


@pytest.mark.timeout(60)
def test_index_lists_published_and_client_deletes(tmp_path, page):
    """The index page and /published.json list published documents; the client deletes one by name."""
    server = start_docsync(tmp_path, "--store", str(tmp_path / "store.sqlite"))
    env = client_env(server.port)
    try:
        run_client("""
            from bokeh.document import Document
            from bokeh.models import Div
            from docsyncd.client import push_session
            for name in ("first", "second"):
                doc = Document()
                doc.add_root(Div(text=f"I am {name}", name="div"))
                push_session(doc, session_id=name).close()
            try:
                push_session(Document(), session_id="no good")
            except ValueError as e:
                print("refused:", e)
            """, tmp_path, env)
        listing = json.loads(page.goto(f"{server.base_url}/published.json").text())
        assert [(d["name"], d["url"]) for d in listing["published"]] == [
            ("first", "/?bokeh-session-id=first"), ("second", "/?bokeh-session-id=second")]

        page.goto(server.base_url + "/")
        page.get_by_role("link", name="second").click()
        page.wait_for_document()
        assert page.get("div", "text") == "I am second"

        output = run_client("""
            from docsyncd.client import delete_published
            print(delete_published("second"), delete_published("second"))
            try:
                delete_published("../second")
            except ValueError as e:
                print("refused:", e)
            """, tmp_path, env)
        assert output.splitlines()[0] == "True False"
        assert "cannot name a published document" in output
        listing = json.loads(page.goto(f"{server.base_url}/published.json").text())
        assert [d["name"] for d in listing["published"]] == ["first"]
    finally:
        stop_quietly(server)


@pytest.mark.timeout(60)
def test_client_reconnects_after_restart(tmp_path, page):
    """A client asked to reconnect finds the restarted daemon with backoff, pushes again and keeps updating browsers."""
    store = tmp_path / "store.sqlite"
    server = start_docsync(tmp_path, "--store", str(store))
    port = server.port
    script = tmp_path / "ticker.py"
    script.write_text("""
from bokeh.document import Document
from bokeh.models import Div
from docsyncd.client import push_session

doc = Document()
div = Div(text="0", name="div")
doc.add_root(div)
session = push_session(doc, session_id="ticker", reconnect=True)
print("pushed", flush=True)

def tick():
    div.text = str(int(div.text) + 1)

doc.add_periodic_callback(tick, 100)
session.loop_until_closed()
print("closed:", session.error, flush=True)
""")
    client = ClientProcess(script, tmp_path / "ticker.log", client_env(port))
    try:
        client.wait_for_output("pushed")
        page.open(f"{server.base_url}/?bokeh-session-id=ticker")
        first = int(page.wait_for_prop("div", "text", lambda t: int(t) > 3))
        sigkill(server)
        server = start_docsync(tmp_path, "--store", str(store), port=port, name="restarted")
        page.open(f"{server.base_url}/?bokeh-session-id=ticker")
        page.wait_for_prop("div", "text", lambda t: int(t) > first + 5)
        assert client.proc.poll() is None, client.output()
        assert client.interrupt() == 0, client.output()
    finally:
        client.kill()
        stop_quietly(server)
