"""Static files that never leave their folder.

``twisted.web.static.File`` already refuses ``..`` and a ``/`` inside a
segment (``%2F``, ``%2e%2e``) through ``FilePath.child``, but it follows
symlinks: a link in an app's ``static/`` to ``/etc`` would serve ``/etc``.
``ContainedFile`` resolves every file it is about to serve and answers 404
when the real path is outside the real path of the folder it was made for.
It lists no directories either (bokeh serve does not), and a NUL byte in a
path is a 404 rather than an error.

Used for ``/static/`` (BokehJS), ``/static/extensions/<name>/`` (``extensions.py``)
and ``/<app>/static/`` (``web.py``).

Tests: tests/test_files.py
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger
from twisted.web import resource, static

from . import logs

log = Logger(observer=logs.observer)

#: Seconds a response whose URL carries a content hash or version may be cached.
ONE_YEAR = 365 * 24 * 3600


class ContainedFile(static.File):
    """A ``static.File`` whose answers all come from inside its folder, symlinks resolved."""

    def __init__(self, path: str, *args: Any, **kwargs: Any):
        super().__init__(path, *args, **kwargs)
        self.folder = os.path.realpath(path)

    def createSimilarFile(self, path: str) -> static.File:
        child = super().createSimilarFile(path)
        child.folder = self.folder
        return child

    def inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.folder or real.startswith(self.folder.rstrip(os.sep) + os.sep)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        if b"\x00" in path:  # os.stat would raise: an error page instead of 404
            return self.childNotFound
        child = super().getChild(path, request)
        if isinstance(child, static.File) and not self.inside(child.path):
            log.warn("refused {uri}: {path} leads outside {folder}", uri=request.uri.decode("latin-1", "replace"),
                     path=child.path, folder=self.folder)
            return self.childNotFound
        return child

    def directoryListing(self) -> resource.IResource:
        return self.childNotFound
