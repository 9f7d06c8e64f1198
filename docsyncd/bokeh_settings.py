"""The ``BOKEH_*`` settings bokeh serve honours, mapped onto docsyncd's options: the one place that does it.

bokeh serve reads part of its configuration from Bokeh's settings
(``bokeh/settings.py``: the environment, or a ``bokeh.yaml``), and a
deployment written for it sets them.  ``apply_bokeh_settings`` is called by
``tap.Options.postOptions`` and reads them through ``bokeh.settings`` itself,
so names, spellings (``yes``/``1``/``true``) and defaults are Bokeh's.  What
the command line gives wins, then a ``DOCSYNC_*`` variable where docsyncd has
one, then the Bokeh setting, as bokeh serve lets its options win
(``bokeh/command/subcommands/serve.py``):

=========================  ===========================================================================
setting                    in docsyncd
=========================  ===========================================================================
BOKEH_ALLOW_WS_ORIGIN      the websocket origin allowlist; as in bokeh serve it replaces
                           ``--allow-websocket-origin``, and an entry without a port allows any port
BOKEH_SECRET_KEY           the key of signed session ids (after ``DOCSYNC_SECRET_KEY``)
BOKEH_SIGN_SESSIONS        without ``--session-ids``: ``signed`` when true, else ``unsigned``
BOKEH_AUTH_MODULE          ``--auth-module``
BOKEH_COOKIE_SECRET        ``--cookie-secret`` (after ``DOCSYNC_COOKIE_SECRET``)
BOKEH_PY_LOG_LEVEL         ``--log-level`` (bokeh serve's ``--log-level`` default; ``warn`` is ``warning``,
                           ``fatal``/``critical`` are ``critical``, ``none`` is ``info``, as bokeh serve)
BOKEH_SSL_CERTFILE,        without ``--listen``: TLS on ``--port`` (``ssl:PORT:privateKey=KEYFILE:
BOKEH_SSL_KEYFILE          certKey=CERTFILE``; the key may sit in the certificate file, as for bokeh serve)
BOKEH_SSL_PASSWORD         refused: Twisted's ``ssl:`` endpoint reads no encrypted keys; decrypt the key
BOKEH_XSRF_COOKIES         refused when true: docsyncd does not check XSRF cookies, and a protection asked
                           for must not be silently missing
BOKEH_RESOURCES,           where pages load BokehJS from, its minified or full build, its log level:
BOKEH_MINIFIED, BOKEH_DEV, Bokeh's own ``Resources`` reads them for every page (``web.AppResource.resources``,
BOKEH_LOG_LEVEL,           mode ``server`` unless ``BOKEH_RESOURCES`` says otherwise, as bokeh serve)
BOKEH_CDN_VERSION,
BOKEH_ROOTDIR
BOKEH_ICO_PATH             ``/favicon.ico`` (``none``: no favicon)
BOKEH_BROWSER              the browser ``--show`` opens (``none``: none)
BOKEH_DEFAULT_SERVER_HOST, ``docsyncd.client``'s ``url="default"``
BOKEH_DEFAULT_SERVER_PORT
``LIBRARY_SETTINGS``       Bokeh's library reads them where docsyncd uses it (validation, serialisation,
                           ids, compilation of custom models, export); nothing to map
=========================  ===========================================================================

Tests: tests/test_bokeh_settings.py
"""

from __future__ import annotations

import logging
import os
from typing import Any

from twisted.python import usage

#: Settings Bokeh's own code reads while docsyncd runs it; docsyncd has nothing to do for them.
LIBRARY_SETTINGS = ("BOKEH_VALIDATE_DOC", "BOKEH_VALIDATION_LEVEL", "BOKEH_PERFORM_ERROR_DIAGNOSTICS",
                    "BOKEH_SIMPLE_IDS", "BOKEH_SERIALIZE_INCLUDE_DEFAULTS", "BOKEH_PRETTY", "BOKEH_COMPRESSION_LEVEL",
                    "BOKEH_NODEJS_PATH", "BOKEH_IGNORE_FILENAME", "BOKEH_CHROMEDRIVER_PATH", "BOKEH_DOCS_CDN",
                    "BOKEH_DOCS_VERSION", "BOKEH_EXPORT_BACKEND")

#: Python logging levels (as ``settings.py_log_level()`` gives them) to ``--log-level`` names.
_LOG_LEVELS = {logging.CRITICAL: "critical", logging.ERROR: "error", logging.WARNING: "warning",
               logging.INFO: "info", logging.DEBUG: "debug", 9: "trace", None: "info"}


def websocket_origins(entries: list[str]) -> list[str]:
    """``BOKEH_ALLOW_WS_ORIGIN``'s entries as allowlist patterns: an entry without a port allows any port
    (bokeh.server.util.match_host), where ``--allow-websocket-origin HOST`` means the scheme's default port."""
    return [entry if ":" in entry or entry == "*" else f"{entry}:*" for entry in (e.strip() for e in entries) if entry]


def _tls_endpoint(certfile: str, keyfile: str | None, port: int, address: str) -> str:
    from .tap import escape_endpoint

    endpoint = f"ssl:{port}:privateKey={escape_endpoint(os.path.abspath(keyfile or certfile))}"
    endpoint += f":certKey={escape_endpoint(os.path.abspath(certfile))}"
    return endpoint + (f":interface={escape_endpoint(address)}" if address else "")


def apply_bokeh_settings(options: Any) -> None:
    """Fill what the command line left unset from the environment and Bokeh's settings (see the module docstring).

    ``UsageError`` for a setting docsyncd cannot honour, in one sentence.
    """
    from bokeh.settings import settings

    if settings.xsrf_cookies():
        raise usage.UsageError("BOKEH_XSRF_COOKIES asks for XSRF cookie checks, which docsyncd does not make; "
                               "unset it (docsyncd's pages and websockets take no form posts)")
    if not options["log-level"]:
        options["log-level"] = _LOG_LEVELS.get(settings.py_log_level(), "info")
    if options["session-ids"] is None:
        options["session-ids"] = "signed" if settings.sign_sessions() else "unsigned"
    options["secret-key"] = os.environ.get("DOCSYNC_SECRET_KEY") or settings.secret_key()
    if not options["cookie-secret"]:
        options["cookie-secret"] = os.environ.get("DOCSYNC_COOKIE_SECRET") or settings.cookie_secret()
    if not options["auth-module"]:
        options["auth-module"] = settings.auth_module()
    from_environment = settings.allowed_ws_origin()
    if from_environment:
        options["allow-websocket-origin"] = websocket_origins(from_environment)
    certfile = settings.ssl_certfile()
    if certfile:
        if settings.ssl_password():
            raise usage.UsageError("BOKEH_SSL_PASSWORD: docsyncd's TLS (Twisted's ssl: endpoint) cannot read an "
                                   "encrypted key; give a decrypted key file in BOKEH_SSL_KEYFILE")
        if options["listen"]:
            raise usage.UsageError("BOKEH_SSL_CERTFILE is set and --listen names the endpoints too; put the "
                                   "certificate in --listen ssl:PORT:privateKey=KEY:certKey=CERT instead")
        options["listen"] = [_tls_endpoint(certfile, settings.ssl_keyfile(), options["port"], options["address"])]
