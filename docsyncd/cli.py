"""``docsync``: the command-line tool installed beside ``twistd docsync``.

::

    docsync serve APP [APP ...] [options]   serve apps in the foreground (asyncio reactor)
    docsync json APP [-o FILE] [--indent N] [--args ...]
    docsync html APP -o FILE [--args ...]
    docsync secret                          a new secret key for signed session ids
    docsync static                          BokehJS's static directory (for an nginx alias)
    docsync info                            versions and the static directory

``serve`` parses its options with ``tap.Options``, so its option names and
``--help`` are those of ``twistd docsync``; an ``APP`` given as a plain
argument is ``--app APP``.  Every error the user can fix (a missing file, a
path that is not an app, a bad option or combination of options, an app that
fails) is one line on stderr and exit status 2, never a traceback.

Tests: tests/test_cli.py, tests/e2e/test_dev_reload.py
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import platform
import sys
from typing import Any, Callable, Iterator

from twisted.python import usage

from . import logs, tap
from .listeners import ListenFailed

EXIT_ERROR = 2

COMMANDS_EPILOG = ("Exit status: 0 on success; 2 with one line on stderr when the command line, "
                   "a file or an app is wrong.")


class CommandError(Exception):
    """A failure to report as one line on stderr, with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (an exception main() prints)."""

    def error(self, message: str) -> Any:
        raise CommandError(f"{self.prog}: {message} (see {self.prog} --help)")


# -- serve --------------------------------------------------------------------


class ServeOptions(tap.Options):
    """``tap.Options`` under the name ``docsync serve``: same options, same help."""

    synopsis = "Usage: docsync serve [options] APP [APP ...] [--args ARG ...]"
    require_app = True  # twistd docsync alone serves the empty app at / (docsyncd/tap.py)
    longdesc = tap.DESCRIPTION + (
        ". APP is an app path, as with --app. docsync serve runs in the foreground, logs to stdout and prints "
        "the URLs it serves; SIGTERM or Ctrl-C stops it cleanly. Errors in the command line or the apps: one line on stderr, exit status 2."
    )


def apps_as_options(argv: list[str], options: usage.Options) -> tuple[list[str], list[str] | None]:
    """``argv`` with every plain argument (an app path) turned into ``--app PATH``,
    and the apps' own arguments: everything after ``--args`` (None without it).

    Option values stay where they are: which options take a value comes from
    ``options`` itself.  The apps' arguments are kept apart because they may
    look like options (``--args --rows 5``), which getopt would parse.
    """
    long_with_value = [o[:-1] for o in options.longOpt if o.endswith("=")]
    long_flags = [o for o in options.longOpt if not o.endswith("=")]
    short_with_value = {c for i, c in enumerate(options.shortOpt) if options.shortOpt[i + 1:i + 2] == ":"}

    def takes_value(name: str) -> bool:
        # getopt accepts any unambiguous prefix of a long option.
        if name in long_with_value or name in long_flags:
            return name in long_with_value
        matches = [o for o in long_with_value + long_flags if o.startswith(name)]
        return len(matches) == 1 and matches[0] in long_with_value

    result: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--args":
            return result, argv[i + 1:]
        if arg == "--":
            return result + [x for path in argv[i + 1:] for x in ("--app", path)], None
        if arg.startswith("--"):
            result.append(arg)
            if "=" not in arg and takes_value(arg[2:]) and i + 1 < len(argv):
                result.append(argv[i + 1])
                i += 1
        elif arg.startswith("-") and arg != "-":
            result.append(arg)
            for j, char in enumerate(arg[1:], start=1):
                if char in short_with_value:
                    if j == len(arg) - 1 and i + 1 < len(argv):  # -p 5006; else -p5006
                        result.append(argv[i + 1])
                        i += 1
                    break
        else:
            result += ["--app", arg]
        i += 1
    return result, None


def serve(argv: list[str]) -> int:
    """``docsync serve``: run the daemon in the foreground until SIGTERM or Ctrl-C."""
    options = ServeOptions()
    try:
        tap_argv, app_argv = apps_as_options(argv, options)
        options.parseOptions(tap_argv)
    except usage.UsageError as e:
        raise CommandError(f"docsync serve: {e} (see docsync serve --help)") from None
    if app_argv is not None:
        options["args"], options["app-argv"] = True, app_argv

    from .reactors import install_asyncio_reactor

    reactor = install_asyncio_reactor()  # as twistd docsync does, unless the calling program chose one
    from twisted.application import service
    from twisted.internet.endpoints import serverFromString
    from twisted.logger import globalLogBeginner, textFileLogObserver

    for endpoint in options["listen"]:
        try:  # parsing reads certificate files and such, but does not listen yet
            serverFromString(reactor, endpoint)
        except Exception as e:
            raise CommandError(f"docsync serve: --listen {endpoint}: {e}") from None

    observer = logs.json_observer() if options["log-format"] == "json" else textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    try:
        top = tap.make_service(options, reactor)
    except SystemExit as e:  # make_service's one-line errors: "docsync: ..."
        message = str(e.code).removeprefix("docsync: ")
        raise CommandError(f"docsync serve: {message}") from None

    application = service.Application("docsync")
    top.setServiceParent(application)
    root = service.IService(application)
    try:
        root.privilegedStartService()  # listens, as twistd does before dropping privileges
    except ListenFailed as e:  # address in use, permission
        raise CommandError(f"docsync serve: {str(e.code).removeprefix('docsync: ')}") from None
    except Exception as e:  # no such directory for a unix socket
        raise CommandError(f"docsync serve: cannot listen: {e}") from None
    root.startService()
    # Runs every session's destroyed hooks and on_server_unloaded before exit.
    reactor.addSystemEventTrigger("before", "shutdown", root.stopService)

    reactor.run()
    return 0


# -- json, html -----------------------------------------------------------------


@contextlib.contextmanager
def _quiet_build(stdout_to_stderr: bool) -> Iterator[None]:
    """Run an app without Bokeh's multi-line error logs (the caller reports
    failures in one line), and, when the output goes to stdout, with what the
    app prints sent to stderr instead."""
    handlers_log = logging.getLogger("bokeh.application")
    level = handlers_log.level
    handlers_log.setLevel(logging.CRITICAL + 1)
    try:
        if stdout_to_stderr:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        else:
            yield
    finally:
        handlers_log.setLevel(level)


def build_document(command: str, path: str, argv: list[str], quiet_stdout: bool = False) -> Any:
    """Run the app at ``path`` once and return its document; a failure is a CommandError."""
    from .apps import AppLoadError, document_build_errors, load_app

    with _quiet_build(quiet_stdout):
        try:
            app = load_app(path, argv)
            doc = app.application.create_document()
        except AppLoadError as e:
            raise CommandError(f"docsync {command}: {e}") from None
        except Exception as e:
            raise CommandError(f"docsync {command}: the app {path} failed: {type(e).__name__}: {e}") from None
    errors = document_build_errors(app.application)
    if errors:
        raise CommandError(f"docsync {command}: the app {path} failed: {errors[0]}")
    return doc


def write_output(command: str, filename: str, text: str) -> None:
    """Write ``text`` to ``filename``, or to stdout for ``-``."""
    if filename == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    try:
        with open(filename, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise CommandError(f"docsync {command}: cannot write {filename}: {e.strerror}") from None


def run_json(args: argparse.Namespace) -> int:
    from bokeh.core.json_encoder import serialize_json

    doc = build_document("json", args.app, args.args, quiet_stdout=args.output == "-")
    write_output("json", args.output, serialize_json(doc.to_json(), indent=args.indent))
    return 0


def run_html(args: argparse.Namespace) -> int:
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from .custom_models import CustomModelError, compile_in_this_thread

    doc = build_document("html", args.app, args.args, quiet_stdout=args.output == "-")
    try:
        compile_in_this_thread(doc)  # custom models, with a one-line error
    except CustomModelError as e:
        raise CommandError(f"docsync html: {e}") from None
    # Bokeh's own page template: an app's templates/ may link to its static/
    # files, which need the server.  Python callbacks cannot run here; the
    # help says so instead of Bokeh's warning.
    if not doc.roots:  # Panel's .servable() adds roots only to a served document
        raise CommandError(f"docsync html: the app {args.app} added nothing to its document outside a server "
                           "(a Panel app's .servable() adds only when served; Panel's .save() writes its pages)")
    page = file_html(doc, INLINE, doc.title, suppress_callback_warning=True)
    write_output("html", args.output, page)
    return 0


# -- secret, static, info -----------------------------------------------------


def run_secret(args: argparse.Namespace) -> int:
    from bokeh.util.token import generate_secret_key

    print(generate_secret_key())
    return 0


def static_path() -> str:
    from bokeh.settings import settings

    return str(settings.bokehjs_path())


def run_static(args: argparse.Namespace) -> int:
    print(static_path())
    return 0


def versions() -> list[tuple[str, str]]:
    """(name, version) of docsyncd and what it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    import autobahn
    import bokeh
    import twisted

    try:
        ours = version("docsyncd")
    except PackageNotFoundError:
        ours = "unknown (not installed)"
    return [
        ("docsyncd", ours),
        ("bokeh", bokeh.__version__),
        ("twisted", twisted.__version__),
        ("autobahn", autobahn.__version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"),
    ]


def run_info(args: argparse.Namespace) -> int:
    rows = versions() + [("static", static_path())]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


# -- the parser -----------------------------------------------------------------


def _indent(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="docsync",
        description="Serve Bokeh apps with docsyncd, and tools around them.",
        epilog=COMMANDS_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"docsync {versions()[0][1]}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, run: Callable[[argparse.Namespace], int], description: str = "",
                **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description or help, epilog=COMMANDS_EPILOG,
                                  **kwargs)
        sub.set_defaults(run=run)
        return sub

    # Only listed here: main() hands `serve` to tap.Options before argparse sees it.
    command("serve", "serve apps in the foreground; `docsync serve --help` lists the options",
            lambda args: serve([]), add_help=False)

    def app_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("app", metavar="APP", help="a Bokeh app: a .py module or a directory with main.py")
        sub.add_argument("--args", nargs=argparse.REMAINDER, default=[], metavar="ARG",
                         help="every argument after this one becomes the app's sys.argv[1:]")

    json_cmd = command("json", "run an app once and write its document as JSON", run_json,
                       "Run an app once, as for a new session, and write its Bokeh document as JSON "
                       "(what `bokeh json` writes).",
                       usage="docsync json [-h] APP [-o FILE] [--indent N] [--args ARG ...]")
    app_args(json_cmd)
    json_cmd.add_argument("-o", "--output", metavar="FILE", default="-",
                          help="where to write the JSON (default: - for standard output)")
    json_cmd.add_argument("--indent", metavar="N", type=_indent, default=None,
                          help="indent the JSON by N spaces (default: one line)")

    html_cmd = command("html", "write a standalone HTML page of an app's document", run_html,
                       "Run an app once and write an HTML page of its document with BokehJS inline, "
                       "which opens without a server or network. Python callbacks do not run there; "
                       "JavaScript callbacks do. The page is Bokeh's standard one: an app's "
                       "templates/index.html is not used, since its links to the app's static/ files "
                       "need the server.",
                       usage="docsync html [-h] APP -o FILE [--args ARG ...]")
    app_args(html_cmd)
    html_cmd.add_argument("-o", "--output", metavar="FILE", required=True,
                          help="where to write the page (- for standard output)")

    command("secret", "print a new secret key for signed session ids", run_secret,
            "Print a new secret key. Give it to the server in DOCSYNC_SECRET_KEY with "
            "--session-ids signed.")
    command("static", "print BokehJS's static directory, for an nginx alias", run_static,
            "Print the directory of BokehJS's static files that the server serves at /static/, "
            "e.g. for nginx: location /static/ { alias <this directory>/; }")
    command("info", "print versions of docsyncd, bokeh, twisted, autobahn and Python, and the static directory",
            run_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``docsync`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "serve":
            return serve(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise CommandError("docsync: give a command: serve, json, html, secret, static or info "
                               "(see docsync --help)")
        return args.run(args)
    except CommandError as e:
        print(e, file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as e:  # --help and --version (0)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return EXIT_ERROR
        return e.code or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
