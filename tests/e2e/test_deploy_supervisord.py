"""etc/supervisord/docsyncd.conf: parsed as supervisord reads it, its command run as supervisord would.

supervisord reads its files with configparser and expands each value with
``value % {"program_name": ..., "process_num": ..., ...}``; the test does the
same (supervisor itself need not be installed).
"""

from __future__ import annotations

import configparser
import re
import shlex
import socket

import pytest

from e2e_support import EXAMPLES, REPO, TWISTD_CMD, free_port, http_ok

pytestmark = pytest.mark.e2e

CONF = REPO / "etc" / "supervisord" / "docsyncd.conf"
NGINX_SITE = REPO / "etc" / "nginx" / "docsyncd.conf"


def program() -> configparser.SectionProxy:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read_string(CONF.read_text(encoding="utf-8"))
    return parser["program:docsyncd"]


def expand(value: str, process_num: int) -> str:
    """supervisord's expansion of a [program:x] value for one process."""
    return value % {"program_name": "docsyncd", "group_name": "docsyncd", "process_num": process_num,
                    "numprocs": int(program()["numprocs"]), "here": str(CONF.parent),
                    "host_node_name": socket.gethostname()}


def process_nums() -> list[int]:
    prog = program()
    start = int(prog.get("numprocs_start", "0"))
    return list(range(start, start + int(prog["numprocs"])))


def test_config_parses_with_two_processes_on_the_nginx_upstream_ports():
    """The program has two processes named by process_num, stopped with TERM, on 5006 and 5007, the ports of the nginx upstream."""
    prog = program()
    assert prog["numprocs"] == "2"
    assert prog["process_name"] == "%(program_name)s_%(process_num)d"
    assert prog["stopsignal"] == "TERM"
    names = [expand(prog["process_name"], n) for n in process_nums()]
    assert names == ["docsyncd_5006", "docsyncd_5007"]

    ports = []
    for n in process_nums():
        argv = shlex.split(expand(prog["command"], n))
        assert argv[1:3] == ["-n", "--pidfile="], "foreground, no pidfile shared by the processes"
        ports.append(int(argv[argv.index("--port") + 1]))
    assert ports == [5006, 5007]
    upstream = [int(p) for p in re.findall(r"^\s*server 127\.0\.0\.1:(\d+);", NGINX_SITE.read_text(), re.M)]
    assert ports == upstream


@pytest.mark.timeout(60)
def test_expanded_command_lines_run_working_daemons(spawn, tmp_path):
    """Each process's command line, with %(process_num)d expanded (to free ports here), starts a docsyncd that serves the app, both in one directory."""
    prog = program()
    daemons = []
    for _ in process_nums():
        port = free_port()  # stands in for process_num: the command's port is %(process_num)d
        argv = shlex.split(expand(prog["command"], port))
        assert argv[0].endswith("twistd")
        argv[argv.index("--app") + 1] = str(EXAMPLES / "press_me.py")
        url = f"http://127.0.0.1:{port}/press_me"
        # Both in one working directory (`directory=`), as supervisord runs them.
        daemons.append(spawn([*TWISTD_CMD, *argv[1:]], lambda url=url: http_ok(url), port=port, cwd=tmp_path))
    for daemon in daemons:
        assert http_ok(f"http://127.0.0.1:{daemon.port}/press_me")
    for daemon in daemons:  # stopsignal=TERM: a clean exit 0
        assert daemon.stop() == 0
