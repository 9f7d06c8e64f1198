"""The README's two commands on the machines new users have: bare Debian 12 and Debian 13.

For each suite, a copy of a debootstrapped root with nothing but Debian's
``python3`` (tests/debian_roots.py; the base is cached per machine under
/var/cache/docsyncd) gets a clean clone of this repository's HEAD, and inside it:

1. ``scripts/serve-example --port PORT`` creates ``.venv`` (apt-installing
   python3-venv, which the root lacks), installs docsyncd, and prints the URL
   to open.  Host Chromium opens that URL over loopback (the root shares the
   host's network) and clicks Press Me twice: Python's callback answers each
   click.  Ctrl-C (SIGINT) stops it.
2. ``scripts/serve-example`` again installs nothing (nothing changed).
3. ``scripts/test -m "not e2e"`` installs the test packages (pip extras,
   Debian's chromium and nginx) and runs the unit suite.

Bookworm's Python 3.11 resolves Bokeh 3.9; trixie's 3.13 resolves 3.10, and
the test checks it does.  Each phase's time goes to the terminal and to
tests/e2e/artifacts/fresh-debian-SUITE.txt.  Commit before running it: the
clone is of HEAD, as CI's checkout is.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from debian_roots import Chroot, base_root
from e2e_support import ARTIFACTS, REPO, free_port, press_me_clicks, wait_until

pytestmark = pytest.mark.e2e

#: What pip resolves on each suite's own python3 (Bokeh 3.10 needs Python 3.12 or later).
SUITES = {"bookworm": "3.9.", "trixie": "3.10."}

CLONE = "/home/user/docsyncd"  # where the clean clone sits inside the root


def _clean_clone(dest) -> str:
    """Clone this repository's HEAD into ``dest`` (no work-tree changes, no .venv); return the commit."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", head], check=True)
    return head


class _Timings:
    """Each phase's duration, reported live and kept in the suite's artifact file."""

    def __init__(self, suite: str, reporter):
        self.suite, self.reporter, self.lines = suite, reporter, []
        self.started = time.monotonic()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.path = ARTIFACTS / f"fresh-debian-{suite}.txt"

    def note(self, line: str) -> None:
        line = f"fresh {self.suite}: {line}"
        self.lines.append(line)
        self.path.write_text("\n".join(self.lines) + "\n")
        if self.reporter is not None:
            self.reporter.write_line(line)

    def phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.note(f"{name}: {now - since:.0f} s")
        return now


def _serve_example(root: Chroot, port: int, log_path):
    """Start ``scripts/serve-example`` inside; return the process and the URL it printed."""
    log_file = open(log_path, "w")
    proc = root.popen(f"cd {CLONE} && exec scripts/serve-example --port {port}", log_file)
    expected = f"press_me running at http://localhost:{port}/press_me"

    def printed():
        if proc.poll() is not None:
            pytest.fail(f"scripts/serve-example exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        return expected in log_path.read_text()

    wait_until(printed, timeout=600, interval=0.5, message=lambda: f"'{expected}' in\n{log_path.read_text()[-3000:]}")
    return proc, log_file


def _ctrl_c(proc, log_file, log_path) -> None:
    """Stop as a user does, with Ctrl-C: the daemon shuts down cleanly (twistd then ends "killed by SIGINT")."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_file.close()
    log = log_path.read_text()
    assert code in (0, -signal.SIGINT), f"exit {code}:\n{log[-3000:]}"
    assert "all sessions discarded and apps unloaded" in log and "Traceback" not in log, log[-3000:]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("suite", list(SUITES))
def test_readme_commands_on_bare_debian(suite, tmp_path, page, request):
    timings = _Timings(suite, request.config.pluginmanager.get_plugin("terminalreporter"))
    t = time.monotonic()
    base = base_root(suite, timings.note)
    t = timings.phase("base root (cached after the first run)", t)
    with Chroot(base, tmp_path / "root", suite) as root:
        commit = _clean_clone(root.path / CLONE.lstrip("/"))
        assert not (root.path / "usr/lib/python3/dist-packages/pip").exists(), "the base root should lack pip"
        t = timings.phase(f"copy of the root and a clean clone of {commit[:10]}", t)

        port = free_port()
        proc, log_file = _serve_example(root, port, tmp_path / "serve-1.log")
        t = timings.phase("scripts/serve-example until it printed its URL (venv, pip, apt)", t)
        try:
            page.open(f"http://localhost:{port}/press_me")
            assert press_me_clicks(page, 2) == ["0", "1"]
            page.screenshot(path=str(ARTIFACTS / f"fresh-debian-{suite}.png"))
        finally:
            _ctrl_c(proc, log_file, tmp_path / "serve-1.log")
        first_run = (tmp_path / "serve-1.log").read_text()
        assert "created the virtual environment .venv" in first_run and "installing docsyncd into .venv" in first_run
        t = timings.phase("browser round trip from the host and Ctrl-C", t)

        proc, log_file = _serve_example(root, port, tmp_path / "serve-2.log")
        _ctrl_c(proc, log_file, tmp_path / "serve-2.log")
        second_run = (tmp_path / "serve-2.log").read_text()
        assert "installing" not in second_run and "created the virtual environment" not in second_run, second_run
        t = timings.phase("scripts/serve-example again (nothing to install)", t)

        version = root.run(f"{CLONE}/.venv/bin/python -c 'import bokeh; print(bokeh.__version__)'",
                           tmp_path / "bokeh-version.log", timeout=60)
        assert version.stdout.startswith(SUITES[suite]), version.stdout
        timings.note(f"Bokeh {version.stdout.strip()}")

        tests = root.run(f"cd {CLONE} && scripts/test -m 'not e2e' -q -p no:cacheprovider",
                         tmp_path / "unit-tests.log", timeout=1500)
        (ARTIFACTS / f"fresh-debian-{suite}-unit-tests.log").write_text(tests.stdout)
        summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else ""
        timings.phase(f"scripts/test -m 'not e2e' ({summary})", t)
        assert tests.returncode == 0, tests.stdout[-5000:]
    timings.note(f"total: {time.monotonic() - timings.started:.0f} s")
