"""Bare Debian roots for tests/e2e/test_fresh_debian.py: what a new user's machine has.

A root is ``debootstrap --variant=minbase --include=python3 SUITE``: Debian's
own ``python3`` and nothing else (no venv, no pip, no chromium, no git).  The
debootstrapped base of each suite is built once per machine and kept in
``CACHE`` (outside any clone, so every clone and CI run on the machine shares
it); each test run copies it, so the commands under test always meet a root
that lacks what they install.  Downloaded ``.deb`` files and pip's cache are
kept too (bind-mounted into the copy): they spare the network, not the
installs.

The Debian mirror is the host's own, read from its apt sources at run time
(``debian_mirror``): no package registry is named here.

``Chroot`` runs commands in a copy with ``/proc``, ``/sys``, ``/dev`` and
``/dev/pts`` mounted, and unmounts them (and the cache mounts) on exit,
whatever happened.
The root shares the host's network, so a daemon inside listens on the host's
loopback.

Tests: tests/test_debian_roots.py (the mirror), tests/e2e/test_fresh_debian.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CACHE = Path(os.environ.get("DOCSYNC_ROOT_CACHE", "/var/cache/docsyncd"))

#: A cached base older than this is built again, so the roots stay close to what users install.
BASE_MAX_AGE = 30 * 24 * 3600  # seconds

_SOURCES_LIST = Path("/etc/apt/sources.list")
_SOURCES_DIR = Path("/etc/apt/sources.list.d")


class NoDebianMirror(Exception):
    """The host's apt sources name no Debian archive to debootstrap from."""


def _one_line_sources(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of each ``deb`` line of a ``sources.list`` file."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]], words[2:]


def _deb822_sources(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of each ``Types: deb`` stanza of a ``.sources`` file."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def apt_sources(sources_list: Path = _SOURCES_LIST, sources_dir: Path = _SOURCES_DIR):
    """Every (URI, suites, components) the host's apt reads, in apt's order."""
    if sources_list.is_file():
        yield from _one_line_sources(sources_list.read_text())
    for path in sorted(sources_dir.glob("*")) if sources_dir.is_dir() else ():
        if path.suffix == ".list":
            yield from _one_line_sources(path.read_text())
        elif path.suffix == ".sources":
            yield from _deb822_sources(path.read_text())


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    for line in os_release.read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise NoDebianMirror(f"{os_release} names no VERSION_CODENAME: is this host Debian?")


def debian_mirror(codename: str | None = None, **sources) -> str:
    """The URI of the Debian archive the host installs its own release from.

    That is the first ``deb`` source whose suites include the host's codename
    itself (not ``-security`` or ``-updates``, which live elsewhere) with the
    ``main`` component; third-party repositories name other suites.
    """
    codename = codename or host_codename()
    for uri, suites, components in apt_sources(**sources):
        if codename in suites and "main" in components:
            return uri
    raise NoDebianMirror(f"no apt source of this host serves '{codename} main' "
                         f"(looked in {_SOURCES_LIST} and {_SOURCES_DIR}/*.list, *.sources)")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` now (from /proc/self/mounts), innermost last."""
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def remove_root(path: Path) -> None:
    """Delete a root directory, never through a mount (a failed debootstrap may leave its /proc mounted)."""
    for point in reversed(mounts_under(path)):
        subprocess.run(["umount", "--lazy", point], check=False)
    leftover = mounts_under(path)
    if leftover:
        raise RuntimeError(f"still mounted under {path}, not deleting it: {leftover}")
    shutil.rmtree(path)


@contextmanager
def _locked(path: Path):
    """One process at a time builds a base (two test runs on one machine share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_root(suite: str, log) -> Path:
    """The cached debootstrapped base of ``suite``, built when missing or too old.

    ``log(line)`` hears what happens.  Raises ``subprocess.CalledProcessError``
    when debootstrap fails (its output is in the log file beside the base).
    """
    base = CACHE / "debian-roots" / suite
    done = base / ".docsyncd-base-complete"
    with _locked(CACHE / "debian-roots" / f"{suite}.lock"):
        if done.exists() and time.time() - done.stat().st_mtime < BASE_MAX_AGE:
            return base
        mirror = debian_mirror()
        building = base.with_name(f"{suite}.building")
        for stale in (building, base):
            if stale.exists():
                remove_root(stale)
        log(f"debootstrap {suite} from {mirror} (minbase + python3) into {base}")
        started = time.monotonic()
        with open(base.with_name(f"{suite}.debootstrap.log"), "w") as out:
            subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", suite, str(building), mirror],
                           stdout=out, stderr=subprocess.STDOUT, check=True)
        building.rename(base)
        done.touch()
        log(f"debootstrap {suite}: {time.monotonic() - started:.0f} s")
        return base


class Chroot:
    """A fresh copy of a base root, with what commands inside need mounted.

    ``run(command)`` runs a shell command inside as root with a clean
    environment (``HOME=/root``, the usual ``PATH``); ``popen`` starts one in
    the background.  The host's CA bundle is copied in and named by
    ``PIP_CERT``/``SSL_CERT_FILE``, so pip inside trusts what the host's
    network needs; proxy variables pass through.
    """

    _HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
    _ROOT_CA = "/usr/local/share/docsyncd-host-ca.crt"

    def __init__(self, base: Path, path: Path, suite: str):
        self.base, self.path, self.suite = base, path, suite
        self._mounted: list[Path] = []

    def __enter__(self) -> "Chroot":
        subprocess.run(["cp", "-a", "--reflink=auto", str(self.base), str(self.path)], check=True)
        shutil.copy("/etc/resolv.conf", self.path / "etc/resolv.conf", follow_symlinks=True)
        if self._HOST_CA.is_file():
            shutil.copy(self._HOST_CA, self.path / self._ROOT_CA.lstrip("/"))
        try:
            self._mount(["-t", "proc", "proc"], "proc")
            self._mount(["-t", "sysfs", "sysfs"], "sys")
            self._mount(["--bind", "/dev"], "dev")
            self._mount(["--bind", "/dev/pts"], "dev/pts")  # apt logs its dpkg runs through a pty
            self._mount(["--bind", str(self._cache_dir(f"apt-archives/{self.suite}"))], "var/cache/apt/archives")
            self._mount(["--bind", str(self._cache_dir("pip"))], "root/.cache/pip")
        except BaseException:
            self.unmount()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.unmount()
        remove_root(self.path)

    @staticmethod
    def _cache_dir(name: str) -> Path:
        path = CACHE / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _mount(self, how: list[str], inside: str) -> None:
        target = self.path / inside
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *how, str(target)], check=True)
        self._mounted.append(target)

    def unmount(self) -> None:
        """Unmount everything this root mounted, innermost first; lazily when busy."""
        while self._mounted:
            target = self._mounted.pop()
            if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "--lazy", str(target)], check=False)

    def environment(self) -> dict[str, str]:
        env = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "TERM": "dumb"}
        if (self.path / self._ROOT_CA.lstrip("/")).is_file():
            env["PIP_CERT"] = env["SSL_CERT_FILE"] = self._ROOT_CA
        env.update({k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")})
        return env

    def _argv(self, command: str) -> list[str]:
        return ["chroot", str(self.path), "/bin/bash", "-c", command]

    def run(self, command: str, log_path: Path, timeout: float) -> subprocess.CompletedProcess:
        """Run ``command`` inside; its output goes to ``log_path`` (and is returned)."""
        result = subprocess.run(self._argv(command), env=self.environment(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        log_path.write_text(f"# {command}\n{result.stdout}")
        return result

    def popen(self, command: str, log_file) -> subprocess.Popen:
        """Start ``command`` inside (end it with ``exec ...`` so that signals reach the program itself)."""
        return subprocess.Popen(self._argv(command), env=self.environment(), stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT)
