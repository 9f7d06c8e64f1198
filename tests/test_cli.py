"""The ``docsync`` console script: serve, json, html, secret, static, info,
bad input, and --help texts that agree with what the commands do (docsyncd/cli.py, docsyncd/urls.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent

from docsyncd import cli, tap

from e2e.e2e_support import free_port, wait_until  # tests/e2e, a namespace package beside this file

REPO = Path(__file__).resolve().parents[1]
PRESS_ME = REPO / "examples" / "press_me.py"
CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


# -- helpers ------------------------------------------------------------------

def docsync(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m docsyncd.cli ARGS`` (the console script's code) to completion.

    ``env`` entries that are None are removed from the environment.
    """
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "docsyncd.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run ``cli.main(args)`` in this process (faster than a subprocess) and capture its output."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["docsync", *args], code, captured.out, captured.err)


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit status 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Served:
    """A ``docsync serve`` subprocess with its stdout in a file."""

    def __init__(self, args: list[str], tmp_path: Path, env: dict | None = None):
        self.log_path = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*')))}.log"
        self.err_path = self.log_path.with_suffix(".err")
        self._out = open(self.log_path, "w")
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "docsyncd.cli", "serve", *args], cwd=tmp_path,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                     stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text() + self.err_path.read_text()

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        def seen():
            if self.proc.poll() is not None:
                pytest.fail(f"docsync serve exited with {self.proc.returncode}; log:\n{self.log()}")
            return text in self.log()
        wait_until(seen, timeout, message=f"{text!r} in the log")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"docsync serve did not exit within {STOP_TIMEOUT}s of SIGTERM; log:\n{self.log()}")
        finally:
            self._out.close()
            self._err.close()


@pytest.fixture
def serve(tmp_path):
    """Factory for ``docsync serve`` subprocesses; any still running are SIGTERMed at the end."""
    started: list[Served] = []

    def _serve(*args: str, env: dict | None = None) -> Served:
        s = Served(list(args), tmp_path, env)
        started.append(s)
        return s

    yield _serve
    for s in started:
        s.stop()


@pytest.fixture
def asyncio_app(tmp_path) -> Path:
    """A directory app whose on_session_created hook awaits asyncio."""
    app = tmp_path / "asyncapp"
    app.mkdir()
    (app / "main.py").write_text(textwrap.dedent("""\
        from bokeh.models import Div
        from bokeh.plotting import curdoc
        curdoc().add_root(Div(text="hello", name="banner"))
    """))
    (app / "app_hooks.py").write_text(textwrap.dedent("""\
        import asyncio

        async def on_session_created(session_context):
            await asyncio.sleep(0.01)
            print("asyncio hook ran in", type(asyncio.get_running_loop()).__name__, flush=True)
    """))
    return app


# -- serve --------------------------------------------------------------------

def test_serve_prints_its_urls_serves_and_stops_cleanly_on_sigterm(serve):
    """`docsync serve APP` prints the app's URL, answers there, and exits 0 after SIGTERM having unloaded the apps."""
    port = free_port()
    server = serve(str(PRESS_ME), "--port", str(port), "--address", "127.0.0.1")
    url = f"http://127.0.0.1:{port}/press_me"
    server.wait_for_log(f"press_me running at {url}")
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200 and b"Press Me" in resp.read()
    assert server.stop() == 0
    assert "all sessions discarded and apps unloaded" in server.log()


def test_serve_runs_asyncio_coroutines(serve, asyncio_app):
    """`docsync serve` runs on the asyncio reactor, so an app hook that awaits asyncio just works."""
    port = free_port()
    server = serve(str(asyncio_app), "--port", str(port), "--address", "127.0.0.1")
    server.wait_for_log("running at http://127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/asyncapp", timeout=5) as resp:
        assert resp.status == 200
    server.wait_for_log("asyncio hook ran in")
    assert "asyncio reactor" not in server.log()  # no advice to switch reactors was needed
    assert server.stop() == 0


def test_serve_with_prefix_and_several_apps_prints_each_url(serve, asyncio_app):
    """Every app is printed with the prefix; the wildcard address is shown as localhost."""
    port = free_port()
    server = serve(str(PRESS_ME), str(asyncio_app), "--port", str(port), "--prefix", "/tools")
    server.wait_for_log(f"asyncapp running at http://localhost:{port}/tools/asyncapp")
    assert f"press_me running at http://localhost:{port}/tools/press_me" in server.log()
    assert server.stop() == 0


def test_show_opens_the_app_in_the_browser(serve, tmp_path):
    """`--show` opens the app's URL with the user's browser ($BROWSER) once the server listens."""
    port = free_port()
    opened = tmp_path / "opened.txt"
    browser = f"sh -c {shlex.quote(f'echo %s >> {opened}')}"
    server = serve(str(PRESS_ME), "--port", str(port), "--address", "127.0.0.1", "--show",
                   env={"BROWSER": browser})
    wait_until(lambda: opened.exists() and opened.read_text().strip(), START_TIMEOUT,
               message="the browser to be opened")
    assert opened.read_text().split() == [f"http://127.0.0.1:{port}/press_me"]
    assert server.stop() == 0


class _ThreadlessReactor(MemoryReactorClock):
    """A memory reactor whose threads run at once, in the caller's thread."""

    def callInThread(self, f, *args):
        f(*args)

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def _log_of_started_service(args: list[str]) -> list[str]:
    """The log lines (info and up) of twistd docsync's service tree, started and stopped on a memory reactor."""
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        options = tap.Options()
        options.parseOptions(args)
        top = tap.make_service(options, _ThreadlessReactor())
        top.privilegedStartService()
        top.startService()
        top.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [f"{e['log_level'].name}: {formatEvent(e)}" for e in events
            if e.get("log_level", LogLevel.debug) >= LogLevel.info and e.get("log_namespace", "").startswith("docsyncd")]


def test_twistd_docsync_logs_the_url_of_each_app():
    """Once listening, the daemon logs where each app is (the wildcard address as localhost), or the empty document."""
    log = _log_of_started_service(["--app", str(PRESS_ME), "--app", str(REPO / "examples" / "dashboard"),
                                   "--port", "5999", "--prefix", "p"])
    assert "info: press_me running at http://localhost:5999/p/press_me" in log
    assert "info: dashboard running at http://localhost:5999/p/dashboard" in log
    log = _log_of_started_service(["--port", "5998"])
    assert "info: no app given: an empty document for Python clients to push to at http://localhost:5998/" in log
    assert not [line for line in log if "app :" in line or "app  " in line], log


def test_show_opener_uses_the_listening_port(monkeypatch):
    """BrowserOpener opens each app at the first listener's URL, on a thread, after the listeners start."""
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    log = _log_of_started_service(["--app", str(PRESS_ME), "--port", "5999", "--show", "--prefix", "p"])
    assert opened == ["http://localhost:5999/p/press_me"]
    assert not [line for line in log if line.startswith("warn")]


def test_show_without_a_browser_says_so(monkeypatch):
    """When webbrowser finds no browser to run, --show logs a warning naming the URL and $BROWSER."""
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    log = _log_of_started_service(["--app", str(PRESS_ME), "--port", "5999", "--show"])
    assert [line for line in log if line.startswith("warn")] == [
        "warn: --show: no web browser found to open http://localhost:5999/press_me (set $BROWSER to choose one); "
        "open it yourself"]


def test_apps_as_options_turns_paths_into_app_options():
    """Plain arguments become --app, option values stay values, and --args ends the conversion."""
    options = cli.ServeOptions()
    argv = ["a.py", "--port", "5006", "-p", "7", "-p8", "--prefix=/x", "--dev", "b/", "--listen", "tcp:1",
            "--po", "9", "c.py", "--args", "d.py", "--rows", "3"]
    assert cli.apps_as_options(argv, options) == (
        ["--app", "a.py", "--port", "5006", "-p", "7", "-p8", "--prefix=/x", "--dev", "--app", "b/",
         "--listen", "tcp:1", "--po", "9", "--app", "c.py"],
        ["d.py", "--rows", "3"])
    assert cli.apps_as_options(["a.py"], options) == (["--app", "a.py"], None)
    assert cli.apps_as_options(["--", "-odd.py"], options) == (["--app", "-odd.py"], None)


def test_serve_passes_args_that_look_like_options_to_the_apps(serve, tmp_path):
    """Everything after --args, options included, becomes the app's sys.argv[1:], not docsync's options."""
    app = tmp_path / "argv_app.py"
    app.write_text("import sys\nfrom bokeh.plotting import curdoc\ncurdoc().title = 'argv=' + ' '.join(sys.argv[1:])\n")
    port = free_port()
    server = serve(str(app), "--port", str(port), "--address", "127.0.0.1", "--args", "--rows", "5", "--port", "1")
    server.wait_for_log("running at http://127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/argv_app", timeout=5) as resp:
        assert b"<title>argv=--rows 5 --port 1</title>" in resp.read()
    assert server.stop() == 0


@pytest.mark.parametrize("args, fragments", [
    ([], ["give at least one app"]),
    (["no_such_app.py"], ["no such app", "no_such_app.py"]),
    (["README.md"], ["is not a Python module (.py) or an app directory"]),
    (["docsyncd/templates"], ["without main.py"]),
    ([str(PRESS_ME), "--port", "notaport"], ["port"]),
    ([str(PRESS_ME), "--frobnicate"], ["frobnicate"]),
    ([str(PRESS_ME), "--show", "--listen", "unix:/tmp/docsync-test.sock"], ["--show needs a TCP or TLS listener"]),
    ([str(PRESS_ME), "--session-ids", "signed"], ["DOCSYNC_SECRET_KEY"]),
    ([str(PRESS_ME), str(PRESS_ME)], ["two apps would be served at /press_me"]),
    ([str(PRESS_ME), "--listen", "bogus:1"], ["--listen bogus:1", "Unknown endpoint type"]),
    ([str(PRESS_ME), "--listen", "tcp:notaport"], ["--listen tcp:notaport"]),
    ([str(PRESS_ME), "--listen", "ssl:0:privateKey=/no/such/key.pem"], ["/no/such/key.pem"]),
    ([str(PRESS_ME), "--listen", "unix:/no/such/dir/docsync.sock"], ["cannot listen", "/no/such/dir"]),
], ids=["no-app", "missing-file", "not-python", "dir-without-main", "bad-port", "unknown-option",
        "show-with-unix-only", "signed-without-key", "same-name-twice", "unknown-endpoint", "bad-endpoint-port",
        "missing-tls-key", "unix-socket-in-missing-dir"])
def test_serve_bad_input_is_one_line_and_exit_2(args, fragments):
    """A missing file, a path that is not an app, a bad option or a bad combination: one line, exit status 2."""
    env = {"DOCSYNC_SECRET_KEY": None, "BOKEH_SECRET_KEY": None}
    assert_one_line_error(docsync("serve", *args, env=env), "docsync serve:", *fragments)


def test_serve_app_with_syntax_error_is_one_line(tmp_path):
    """An app with a syntax error stops `docsync serve` at start-up with one line naming the file and line."""
    (tmp_path / "broken.py").write_text("x = (\n")
    assert_one_line_error(docsync("serve", str(tmp_path / "broken.py")), "broken.py, line 1", "SyntaxError")


def test_serve_address_in_use_is_one_line(tmp_path):
    """A port another process listens on is reported in one line, exit status 2."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = docsync("serve", str(PRESS_ME), "--port", str(port), "--address", "127.0.0.1")
    assert_one_line_error(result, "docsync serve:", str(port))


# -- json -----------------------------------------------------------------------

def test_json_writes_the_document_to_stdout(capsys):
    """`docsync json APP` writes the app's document JSON, on one line, to standard output."""
    assert cli.main(["json", str(PRESS_ME)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    doc = json.loads(out)
    assert doc["title"] == "Press Me" and doc["roots"][0]["name"] == "Column"


def test_json_to_a_file_with_indent(tmp_path):
    """`-o FILE --indent N` writes indented JSON to the file (through the installed script's code path)."""
    out = tmp_path / "doc.json"
    result = docsync("json", str(PRESS_ME), "-o", str(out), "--indent", "2")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith('{\n  "version"')
    assert json.loads(text)["title"] == "Press Me"


def test_json_passes_args_to_the_app(tmp_path, capsys):
    """Everything after --args becomes the app's sys.argv[1:], and what the app prints stays out of the JSON."""
    app = tmp_path / "argv_app.py"
    app.write_text(textwrap.dedent("""\
        import sys
        from bokeh.plotting import curdoc
        print("the app talks")
        curdoc().title = " ".join(sys.argv[1:])
    """))
    assert cli.main(["json", str(app), "--args", "--rows", "10"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["title"] == "--rows 10"
    assert "the app talks" in captured.err


@pytest.mark.parametrize("command", ["json", "html"])
def test_app_that_raises_is_one_line(tmp_path, command, capfd):
    """An app that raises while building its document: one line naming the file, line and error, exit 2."""
    app = tmp_path / "raiser.py"
    app.write_text("raise ValueError('boom')\n")
    assert cli.main([command, str(app), "-o", str(tmp_path / "out")]) == 2
    err = capfd.readouterr().err.strip()
    assert err.splitlines() == [f"docsync {command}: the app {app} failed: {app}, line 1: ValueError: boom"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragments", [
    (["json"], ["required: APP"]),
    (["json", "missing.py"], ["no such app"]),
    (["json", "README.md"], ["not a Python module"]),
    (["json", str(PRESS_ME), "--indent", "-1"], ["--indent", "0 or more"]),
    (["json", str(PRESS_ME), "--indent", "two"], ["--indent"]),
    (["json", str(PRESS_ME), "-o", "/nonexistent-dir/out.json"], ["cannot write /nonexistent-dir/out.json"]),
    (["html", str(PRESS_ME)], ["required: -o/--output"]),
    (["html", "missing.py", "-o", "x.html"], ["no such app"]),
    (["secret", "extra"], ["unrecognized arguments: extra"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["give a command"]),
], ids=["json-no-app", "json-missing-file", "json-not-python", "json-negative-indent", "json-word-indent",
        "json-unwritable-output", "html-without-output", "html-missing-file", "secret-extra-argument",
        "unknown-command", "no-command"])
def test_bad_input_is_one_line_and_exit_2(args, fragments, capsys, monkeypatch):
    """Wrong arguments to any command: one line on stderr, exit status 2, no traceback."""
    monkeypatch.chdir(REPO)
    assert_one_line_error(run_main(capsys, *args), *fragments)


def test_bad_input_through_the_script_is_one_line():
    """The same holds for the script run as a process: one line, exit status 2."""
    assert_one_line_error(docsync("json", "missing.py"), "docsync json: no such app")


# -- html -----------------------------------------------------------------------

def test_html_is_a_standalone_page(tmp_path):
    """`docsync html APP -o FILE` writes a page with BokehJS and the document inline: no script or
    stylesheet is fetched from anywhere."""
    out = tmp_path / "press_me.html"
    assert cli.main(["html", str(PRESS_ME), "-o", str(out)]) == 0
    page = out.read_text()
    assert "<title>Press Me</title>" in page
    assert "press_me_button" in page  # the document itself
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=", page)
    assert len(page) > 500_000  # BokehJS is in it


def test_html_with_a_custom_model_that_does_not_compile(tmp_path):
    """`docsync html` on an app whose custom model's TypeScript has an error: one line naming the model and
    the compiler's first message, exit status 2 (Bokeh itself would print the whole output and exit 1)."""
    broken = REPO / "tests" / "e2e" / "apps" / "custom_model_broken.py"
    result = docsync("html", str(broken), "-o", str(tmp_path / "page.html"), timeout=120)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("docsync html: custom model Broken (") and "did not compile" in line, line
    assert "error TS2322: Type 'string' is not assignable to type 'number'." in line, line
    assert not (tmp_path / "page.html").exists()


def test_html_with_a_custom_model(tmp_path):
    """`docsync html` on examples/custom_model.py puts the compiled Tally model in the page."""
    out = tmp_path / "custom.html"
    result = docsync("html", str(REPO / "examples" / "custom_model.py"), "-o", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "register_plugin" in out.read_text() and "TallyView" in out.read_text()


# Run in its own process: a Playwright already running in this one (the e2e
# tests' session browser) would make a second sync_playwright() fail.
OFFLINE_CHECK = """
import re, sys
from playwright.sync_api import sync_playwright

pw = sync_playwright().start()
browser = pw.chromium.launch(executable_path=sys.argv[2], args=[
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
page = browser.new_page()
refused = []
page.route(re.compile(r"^https?://"), lambda route: (refused.append(route.request.url), route.abort()))
page.goto(sys.argv[1])
page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0"
                       " && Bokeh.documents[0].get_model_by_name('press_me_button') != null", timeout=10_000)
page.get_by_role("button", name="Press Me").wait_for(timeout=10_000)
print("rendered; requests refused:", refused)
browser.close()
pw.stop()
"""


def test_html_renders_in_chromium_without_a_server(tmp_path):
    """The page from `docsync html` opened from a file, with every network request refused, shows the document."""
    out = tmp_path / "press_me.html"
    assert cli.main(["html", str(PRESS_ME), "-o", str(out)]) == 0
    result = subprocess.run([sys.executable, "-c", OFFLINE_CHECK, out.as_uri(), CHROMIUM],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rendered; requests refused: []"


# -- secret, static, info -------------------------------------------------------

def test_secret_prints_a_new_key_that_signs_session_ids(capsys, monkeypatch):
    """`docsync secret` prints a fresh key each time, and serve accepts it for --session-ids signed."""
    assert cli.main(["secret"]) == 0
    assert cli.main(["secret"]) == 0
    first, second = capsys.readouterr().out.split()
    assert first != second and len(first) >= 32
    from bokeh.util.token import check_session_id_signature, generate_session_id

    sid = generate_session_id(secret_key=first.encode(), signed=True)
    assert check_session_id_signature(sid, secret_key=first.encode(), signed=True)
    monkeypatch.setenv("DOCSYNC_SECRET_KEY", first)
    options = tap.Options()
    options.parseOptions(["--app", str(PRESS_ME), "--session-ids", "signed"])
    assert options["secret-key"] == first


def test_static_prints_the_bokehjs_directory(capsys):
    """`docsync static` prints the directory holding BokehJS, the one the server serves at /static/."""
    assert cli.main(["static"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert (path / "js" / "bokeh.min.js").is_file()
    from docsyncd.web import StaticFiles

    assert Path(StaticFiles().directory) == path


def test_info_prints_versions_and_the_static_path(capsys):
    """`docsync info` names docsyncd, bokeh, twisted, autobahn and Python with their versions, and the static path."""
    import platform

    import autobahn
    import bokeh
    import twisted

    assert cli.main(["info"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["bokeh"] == bokeh.__version__
    assert rows["twisted"] == twisted.__version__
    assert rows["autobahn"] == autobahn.__version__
    assert rows["Python"].startswith(platform.python_version())
    assert rows["docsyncd"] == "0.1.0"
    assert Path(rows["static"]).is_dir()


def test_the_installed_console_script_runs():
    """The package installs a `docsync` script beside the interpreter that runs the same main()."""
    script = shutil.which("docsync", path=str(Path(sys.executable).parent)) or shutil.which("docsync")
    assert script, "no docsync script installed: pip install -e ."
    result = subprocess.run([script, "static"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and (Path(result.stdout.strip()) / "js").is_dir()


# -- --help agrees with behaviour -------------------------------------------------

def _option_names(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text))


def test_serve_help_is_twistd_docsync_help():
    """`docsync serve --help` lists exactly the options of `twistd docsync --help`, with the same texts."""
    ours = docsync("serve", "--help")
    twistd = Path(sys.executable).parent / "twistd"
    command = [str(twistd)] if twistd.exists() else [sys.executable, "-m", "twisted"]  # `twist`: same plugin options
    theirs = subprocess.run([*command, "docsync", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ours.returncode == 0 and theirs.returncode == 0, theirs.stderr
    assert ours.stdout.startswith("Usage: docsync serve [options] APP [APP ...]")

    def options_block(text):
        return text[text.index("Options:"):text.index("\n\n", text.index("Options:"))]

    assert options_block(ours.stdout) == options_block(theirs.stdout)
    assert {"--dev", "--show"} <= _option_names(options_block(ours.stdout))


def test_serve_accepts_every_option_its_help_lists():
    """Every option `docsync serve --help` shows parses (none is documented but missing)."""
    text = docsync("serve", "--help").stdout
    options = cli.ServeOptions()
    for name in _option_names(text[text.index("Options:"):]) - {"--help", "--version", "--args", "--app"}:
        assert name[2:] in options.synonyms, name


@pytest.mark.parametrize("command", ["json", "html", "secret", "static", "info"])
def test_command_help_matches_the_parser(command):
    """Each command's --help exits 0 and lists exactly the options its parser accepts."""
    result = docsync(command, "--help")
    assert result.returncode == 0
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    accepted = {o for action in sub._actions for o in action.option_strings if o.startswith("--")}
    assert _option_names(result.stdout.split("options:", 1)[1]) == accepted


def test_top_level_help_lists_every_command():
    """`docsync --help` names every command main() runs, and says what a failure's exit status is."""
    result = docsync("--help")
    assert result.returncode == 0
    for command in ["serve", "json", "html", "secret", "static", "info"]:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    assert "2 with one line on stderr" in " ".join(result.stdout.split())


def test_json_help_describes_stdout_default_and_indent(tmp_path, capsys):
    """What `docsync json --help` promises holds: stdout by default, one line unless --indent is given."""
    text = " ".join(docsync("json", "--help").stdout.split())
    assert "default: - for standard output" in text and "default: one line" in text
    assert cli.main(["json", str(PRESS_ME), "--indent", "4"]) == 0
    assert '\n    "version"' in capsys.readouterr().out


# -- URLs -----------------------------------------------------------------------

def test_base_urls_for_listening_addresses():
    """The wildcard address is shown as localhost, IPv6 literals in brackets, TLS as https, and a
    unix socket has no URL."""
    from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

    from docsyncd.urls import base_url

    assert base_url(IPv4Address("TCP", "0.0.0.0", 5006)) == "http://localhost:5006"
    assert base_url(IPv4Address("TCP", "127.0.0.1", 80)) == "http://127.0.0.1:80"
    assert base_url(IPv6Address("TCP", "::", 5006)) == "http://localhost:5006"
    assert base_url(IPv6Address("TCP", "::1", 5006)) == "http://[::1]:5006"
    assert base_url(IPv4Address("TCP", "10.0.0.1", 443), secure=True) == "https://10.0.0.1:443"
    assert base_url(UNIXAddress(b"/run/docsync.sock")) is None


def test_docsync_html_of_an_empty_document_says_why(tmp_path, capsys):
    """An app that adds no root outside a server (Panel's .servable()) gets one line, not Bokeh's traceback."""
    assert cli.main(["html", str(_empty_app(tmp_path)), "-o",
                     str(tmp_path / "page.html")]) == 2
    error = capsys.readouterr().err
    assert "added nothing to its document" in error and "Traceback" not in error


def _empty_app(tmp_path: Path) -> Path:
    path = tmp_path / "empty.py"
    path.write_text("from bokeh.io import curdoc\n")
    return path
