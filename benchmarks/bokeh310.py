"""``bokeh serve`` 3.10 for the capacity benchmark's ``bokeh310`` column, in a venv of its own.

Bokeh 3.10 needs Python ≥ 3.12 and the benchmarks run on docsyncd's Python
(3.11, Bokeh 3.9), so the 3.10 server runs from ``.bench/bokeh310`` at the
repository root: a venv made with ``<python> -m venv`` and
``pip install 'bokeh>=3.10,<3.11' numpy`` (numpy: the capacity app imports it)
the first time a ``bokeh310`` server is started, and reused while its Bokeh
is still a 3.10.  ``<python>`` is ``--bokeh310-python PATH``, or else the
first of ``python3.13``, ``python3.12`` on PATH and pyenv's 3.13/3.12 builds
that starts.

Tests: tests/test_benchmarks_smoke.py (test_bokeh310_python_choice)
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent.parent / ".bench" / "bokeh310"
REQUIREMENTS = ("bokeh>=3.10,<3.11", "numpy")
SERIES = "3.10."
#: the Python that builds the venv (``--bokeh310-python``); None: found as the module docstring says
base_python: str | None = None


class Unavailable(Exception):
    """No Python ≥ 3.12 to build the venv with, or pip failed; the message says which and how to fix it."""


def find_base_python() -> str:
    """``base_python``, or the first Python ≥ 3.12 found (the module docstring's order)."""
    if base_python:
        return base_python
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for minor in ("3.13", "3.12"):
        candidates += sorted(glob.glob(f"{pyenv}/versions/{minor}.*/bin/python3"), reverse=True)
    found = next((c for c in candidates if c and _runs_312(c)), None)
    if found is None:
        raise Unavailable("Bokeh 3.10 needs Python ≥ 3.12: none found on PATH or in pyenv; "
                          "pass --bokeh310-python PATH")
    return found


def _runs_312(python: str) -> bool:
    """Whether ``python`` starts and is ≥ 3.12 (a pyenv shim of a version not selected does not start)."""
    done = subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"], capture_output=True)
    return done.returncode == 0


def _version(python: Path) -> str:
    """The Bokeh version ``python`` imports, or '' if it cannot."""
    done = subprocess.run([str(python), "-c", "import bokeh, numpy; print(bokeh.__version__)"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def interpreter() -> str:
    """The venv's python, with Bokeh 3.10 installed: built (or rebuilt) first if it is not."""
    python = VENV / "bin" / "python"
    if python.exists() and _version(python).startswith(SERIES):
        return str(python)
    base = find_base_python()
    print(f"bokeh310: building {VENV} with {base} (once; about a minute)", file=sys.stderr, flush=True)
    steps = [[base, "-m", "venv", "--clear", str(VENV)],
             [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(step)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    version = _version(python)
    if not version.startswith(SERIES):
        raise Unavailable(f"{VENV} imports Bokeh {version or '(none)'}, not {SERIES}x")
    return str(python)
