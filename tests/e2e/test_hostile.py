"""Hostile clients against the real daemon, a neighbour session syncing throughout: publishing needs the
owner's credential, and a published document's markup cannot run script in a viewer's browser."""

from __future__ import annotations

import json
import urllib.request
from urllib.error import HTTPError

import pytest

from client_support import ClientProcess, client_env, docsync_only, run_client, start_docsync, stop_quietly
from e2e_support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures(docsync_only.__name__)]

OWNER_KEY = "owner-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"

NEIGHBOUR = """
from bokeh.document import Document
from bokeh.models import Div
from docsyncd.client import ClientSession

doc = Document()
div = Div(text="0", name="div")
doc.add_root(div)
session = ClientSession("neighbour")
session.push(doc, publish=False)
print("pushed", flush=True)
doc.add_periodic_callback(lambda: setattr(div, "text", str(int(div.text) + 1)), 100)
session.loop_until_closed()
"""

PUBLISH = """
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import Div, Slider
from docsyncd.client import ServerError, push_session

doc = Document()
doc.add_root(column(Div(text='<b>hello</b><img src="/nowhere" onerror="window.pwned = 1">', name="div"),
                    Slider(start=0, end=10, value=1, name="slider")))
try:
    push_session(doc, session_id="line").close()
    print("published")
except ServerError as e:
    print("refused:", e)
"""


def delete(base_url, name, key=None, **headers):
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{base_url}/published/{name}", method="DELETE", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except HTTPError as e:
        return e.code


@pytest.mark.timeout(90)
def test_only_the_owner_publishes_and_markup_cannot_run_script(tmp_path, new_page):
    """With --no-local-publishing: no key is refused, the owner's key publishes, another key cannot replace or
    delete, a viewer's browser renders the markup without running its script and moves the slider; the
    neighbour session keeps syncing throughout."""
    keys = tmp_path / "keys"
    keys.write_text(f"owner {OWNER_KEY}\nother {OTHER_KEY}\n")
    server = start_docsync(tmp_path, "--store", str(tmp_path / "store.sqlite"), "--no-local-publishing",
                           "--publish-keys", str(keys))
    (tmp_path / "neighbour.py").write_text(NEIGHBOUR)
    neighbour = ClientProcess(tmp_path / "neighbour.py", tmp_path / "neighbour.log", client_env(server.port))
    try:
        neighbour.wait_for_output("pushed")
        watcher = new_page()
        watcher.open(f"{server.base_url}/?bokeh-session-id=neighbour")
        start = int(watcher.wait_for_prop("div", "text", lambda t: int(t) > 2))

        assert "refused: PublishRefused: publishing needs a credential" in run_client(
            PUBLISH, tmp_path, client_env(server.port))
        assert run_client(PUBLISH, tmp_path, client_env(server.port, DOCSYNC_PUBLISH_KEY=OWNER_KEY)) == "published\n"
        replaced = run_client(PUBLISH.replace("value=1", "value=9"), tmp_path,
                              client_env(server.port, DOCSYNC_PUBLISH_KEY=OTHER_KEY))
        assert "only its owner can replace" in replaced
        assert delete(server.base_url, "line", OTHER_KEY) == 403
        assert delete(server.base_url, "line", OWNER_KEY, Origin=server.base_url) == 403

        viewer = new_page()
        viewer.open(f"{server.base_url}/?bokeh-session-id=line")
        assert viewer.get("div", "text").startswith("<b>hello</b>")
        viewer.wait_for_timeout(500)  # the broken image's error event has fired by now
        assert viewer.evaluate("window.pwned") is None, "the document's markup ran script on docsyncd's origin"
        viewer.set("slider", "value", 4)
        viewer.screenshot(path="/tmp/hostile-shots/published.png")
        stored = lambda: json.loads(urllib.request.urlopen(f"{server.base_url}/published/line", timeout=5).read())
        wait_until(lambda: '"value": 4' in json.dumps(stored()) or '"value":4' in json.dumps(stored()),
                   message="the viewer's slider value in the store")

        assert delete(server.base_url, "line", OWNER_KEY) == 200
        watcher.wait_for_prop("div", "text", lambda t: int(t) > start + 10)
        assert neighbour.proc.poll() is None, neighbour.output()
    finally:
        neighbour.kill()
        stop_quietly(server)
