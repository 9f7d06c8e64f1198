"""Which reactor docsyncd runs on: asyncio, unless twistd's ``-r`` chose another.

Bokeh apps (and the libraries they use) await asyncio: ``bokeh serve`` runs
them on Tornado's asyncio loop, so its users never pick an event loop.
docsyncd matches that by running on Twisted's asyncio reactor whenever nobody
chose a reactor.

Where the choice is made: both of Twisted's runners install the reactor their
``-r``/``--reactor`` names while they parse their own options
(``ReactorSelectionMixin.opt_reactor`` in twistd, ``TwistOptions.opt_reactor``
in twist), and then parse the subcommand's.  After that, twist installs its
default reactor at the end of ``parseOptions`` and twistd imports whichever
is installed once the plugin's ``makeService`` returned.  The one moment both
share, after ``-r`` and before any default, is the subcommand's
``postOptions``: ``tap.Options.postOptions`` calls ``install_asyncio_reactor()``
there when it is parsed as a runner's subcommand (it has a ``parent``), never
when parsed on its own, as ``docsync serve``, the ``--workers`` processes and
the unit tests do.  ``docsync serve`` and the workers call the same function.

Tests: tests/test_reactors.py, tests/e2e/test_asyncio_and_errors.py
"""

from __future__ import annotations

import sys
from typing import Any

#: What a worker process is told to run on (``python -m docsyncd.worker --reactor NAME``).
ASYNCIO, DEFAULT = "asyncio", "default"


def install_asyncio_reactor() -> Any:
    """The global reactor: Twisted's asyncio reactor, installed now unless one is installed already.

    A reactor is already installed when twistd's ``-r`` chose one, or when the
    program calling docsyncd runs its own; that one is kept and returned.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    return reactor


def reactor_name(reactor: Any) -> str:
    """``ASYNCIO`` for Twisted's asyncio reactor, else ``DEFAULT``: what a worker process should install."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return ASYNCIO if isinstance(reactor, AsyncioSelectorReactor) else DEFAULT
