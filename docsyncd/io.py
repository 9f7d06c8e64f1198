"""``output_server`` and ``show``: publish a document under a name, as the old bokeh-server did.

::

    from docsyncd.io import output_server, show
    output_server("line", url="http://localhost:5006/")
    p = figure(); p.line([1, 2, 3], [4, 6, 5])
    show(p)        # publishes curdoc() with p as a root, then opens it in a browser

``show`` pushes ``curdoc()`` to the session named ``name`` with ``publish``:
docsyncd stores the document before it answers, so when ``show`` returns the
document is published, also across daemon restarts, and anyone can open it at
``<url>?bokeh-session-id=<name>`` (listed at ``/`` and ``/published.json``).
``push()`` publishes the current state again without opening a browser.
A name is 1 to 64 letters, digits, ``_`` or ``-``; anything else raises
``ValueError`` at once.  Each call blocks (``docsyncd.client.ClientSession``).
The document belongs to whoever published it (docsyncd/publishing.py): from
the server's machine no credential is needed; from elsewhere pass
``publish_key=`` to ``output_server`` (or set ``DOCSYNC_PUBLISH_KEY``).

Tests: tests/test_client.py (names); tests/e2e/test_client_publish.py
"""

from __future__ import annotations

from typing import Any

from .store import check_name

__all__ = ["output_server", "push", "reset_output", "show"]

_target: dict[str, Any] = {}


def output_server(name: str, url: str = "default", **client_options: Any) -> None:
    """Publish to docsyncd under ``name`` from now on (``url``: the app; default ``http://localhost:5006/``).

    ``client_options`` go to ``docsyncd.client.ClientSession`` (``publish_key``, ``headers``, ``ca_certs``,
    ``secret_key``...).
    """
    from .client import server_url

    check_name(name)
    _target.clear()
    _target.update(name=name, url=server_url(url), options=client_options)


def reset_output() -> None:
    """Forget ``output_server``."""
    _target.clear()


def push(obj: Any = None) -> str:
    """Publish ``curdoc()`` (with ``obj`` added as a root); the page URL where it is shown."""
    return _publish(obj, open_page=False)


def show(obj: Any = None, browser: str | None = None, new: str = "tab") -> str:
    """Publish ``curdoc()`` with ``obj`` added as a root and open it in a browser; the page URL."""
    return _publish(obj, open_page=True, browser=browser, new=new)


def _publish(obj: Any, open_page: bool, browser: str | None = None, new: str = "tab") -> str:
    from bokeh.io import curdoc

    from .client import ClientSession, open_browser

    if not _target:
        raise RuntimeError("call docsyncd.io.output_server(name, url=...) first, to say where to publish")
    doc = curdoc()
    if obj is not None and obj not in doc.roots:
        doc.add_root(obj)
    with ClientSession(_target["name"], _target["url"], **_target["options"]) as session:
        session.push(doc, publish=True)
        url = session.page_url
    if open_page:
        open_browser(url, browser, new)
    return url
