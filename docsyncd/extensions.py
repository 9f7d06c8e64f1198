"""Bokeh extensions' built JavaScript at ``/static/extensions/<name>/...``, as bokeh serve serves it.

An extension package (Panel, an ``bokeh init`` project: a package with
``bokeh.ext.json`` beside its ``__init__``) ships its compiled BokehJS models
in a folder of its own.  Bokeh keeps the registry of those folders in
``bokeh.embed.bundle.extension_dirs`` (name -> folder); a page's bundle lists
``<prefix>/static/extensions/<name>/<file>?v=<version>`` for each, and packages
add folders themselves (Panel registers ``panel`` -> its ``dist/`` when it is
imported and points pages at ``static/extensions/panel/bundled/...``).
bokeh serve answers those URLs from the registry (``bokeh/server/urls.py``,
``MultiRootStaticHandler``); so does this module, with the same rules:

- only files inside the registered folder, symlinks resolved (``ContainedFile``);
- a URL with ``?v=`` is cached for a year, like BokehJS's; without it the
  answer carries ``Last-Modified`` and an ``ETag`` and must be revalidated
  (``304 Not Modified`` when unchanged), as Tornado's static handler does.

The registry is filled as a side effect of bundling (``_bundle_extensions``
walks every model class Bokeh knows), so a process that has not yet rendered
a page with the extension's models, such as a ``--workers`` worker that never
ran the app, would not know the folder.  A name missing from the registry is
therefore looked up among installed packages: if a package of that name is
a Bokeh extension (has ``bokeh.ext.json``), it is imported and Bokeh's walk
runs again.  Nothing else is ever imported because of a URL.

Tests: tests/test_extension_files.py, tests/e2e/test_extensions.py; in Chromium (Panel, --prefix, --workers)
tests/e2e/test_panel.py
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from bokeh.embed import bundle
from bokeh.resources import Resources
from twisted.logger import Logger
from twisted.web import http, resource, server
from twisted.web.pages import notFound

from . import logs
from .files import ONE_YEAR, ContainedFile

log = Logger(observer=logs.observer)

#: What Bokeh's extension packages carry beside their ``__init__.py``.
EXTENSION_MARKER = "bokeh.ext.json"


def _installed_extension(name: str) -> bool:
    """Whether ``name`` is an installed top-level package that is a Bokeh extension.

    ``importlib.util.find_spec`` locates a top-level package without running it.
    """
    if not name.isidentifier():
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    locations = (spec and spec.submodule_search_locations) or []
    return any(os.path.isfile(os.path.join(location, EXTENSION_MARKER)) for location in locations)


def _register_known_extensions() -> None:
    """Run Bokeh's own walk over every model class, which fills ``extension_dirs``."""
    try:
        bundle._bundle_extensions(None, Resources(mode="server"))
    except ValueError as e:  # an extension without its built artifact: the others still count
        log.warn("a Bokeh extension could not be registered: {error}", error=e)


def extension_folder(name: str) -> str | None:
    """The folder Bokeh's registry holds for the extension ``name``, or None when there is none."""
    folder = bundle.extension_dirs.get(name)
    if folder is None and _installed_extension(name):
        importlib.import_module(name)
        _register_known_extensions()
        folder = bundle.extension_dirs.get(name)
    return None if folder is None else os.fspath(folder)


class ExtensionFile(ContainedFile):
    """One extension's folder: files inside it only, with Bokeh's cache rules (module docstring)."""

    def render(self, request: server.Request) -> Any:
        if b"v" in request.args:
            request.setHeader(b"cache-control", f"public, max-age={ONE_YEAR}".encode())
        else:
            request.setHeader(b"cache-control", b"no-cache")
            self.restat(False)
            if self.isfile():
                stat = self.getsize(), self.getModificationTime()
                if request.setETag(b'"%x-%x"' % (stat[0], int(stat[1] * 1e6))) is http.CACHED:
                    return b""
        return super().render(request)


class Extensions(resource.Resource):
    """``/static/extensions/``: one ``ExtensionFile`` per name in Bokeh's extension registry."""

    def getChild(self, name: bytes, request: server.Request) -> resource.IResource:
        try:
            folder = extension_folder(name.decode("ascii"))
        except UnicodeDecodeError:
            folder = None
        if folder is None:
            return notFound()
        return ExtensionFile(folder)

    def render(self, request: server.Request) -> bytes:
        return notFound().render(request)
