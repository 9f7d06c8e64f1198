"""A real nginx for the e2e tests, running a site file shipped in etc/nginx/ with every nginx file in tmp.

The shipped site is rendered by plain text replacement (its listen port, its
two upstream ports and the BokehJS directory, each of which must occur
exactly once), so the tests exercise the file users copy, not a rewrite.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Callable

from bokeh.settings import settings

from e2e_support import _port_open, free_port, wait_until

NGINX = "/usr/sbin/nginx"
# The BokehJS directory written in the shipped files, as an example install path.
SHIPPED_STATIC = "/srv/docsync/venv/lib/python3.11/site-packages/bokeh/server/static/"

NGINX_CONF = """\
# Test wrapper around the shipped site: every file nginx writes is in {tmp}.
daemon off;
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    {types}
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {site};
}}
"""


def render_site(site: Path, nginx_port: int, upstream_ports: list[int], static_dir: str) -> str:
    """The shipped ``site`` with its ports and static directory replaced; each must occur exactly once."""
    text = site.read_text(encoding="utf-8")
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{nginx_port};",
        "server 127.0.0.1:5006;": f"server 127.0.0.1:{upstream_ports[0]};",
        "server 127.0.0.1:5007;": f"server 127.0.0.1:{upstream_ports[1]};",
        f"alias {SHIPPED_STATIC};": f"alias {static_dir.rstrip('/')}/;",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{site} should contain {old!r} exactly once"
        text = text.replace(old, new)
    return text


def distinct_ports(n: int) -> list[int]:
    """``n`` free TCP ports, all different."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class NginxRunner:
    """Starts nginx processes in ``tmp_path`` and stops them all (gracefully) at ``stop_all``."""

    def __init__(self, tmp_path: Path):
        assert os.access(NGINX, os.X_OK), f"{NGINX} is not installed: scripts/test installs it (apt-get install nginx)"
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def __call__(self, site: Path, port: int, upstream_ports: list[int],
                 edit: Callable[[str], str] = lambda text: text) -> Path:
        """Run nginx with the rendered ``site`` (``edit``: a test's change on top); returns its run directory."""
        run_dir = self.tmp_path / "nginx"
        run_dir.mkdir()
        rendered = run_dir / site.name
        rendered.write_text(edit(render_site(site, port, upstream_ports, str(settings.bokehjs_path()))),
                            encoding="utf-8")
        # As root, nginx's workers would run as "nobody", which may not read a
        # bokeh installed under /root: keep them as the invoking user.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        types = "include /etc/nginx/mime.types;" if os.path.exists("/etc/nginx/mime.types") else \
            "types { text/html html; application/javascript js; text/css css; }"
        conf = run_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=run_dir, user=user, types=types, site=rendered), encoding="utf-8")
        base = [NGINX, "-c", str(conf), "-p", f"{run_dir}/", "-e", str(run_dir / "error.log")]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t rejected the rendered site:\n{check.stderr}"
        with open(run_dir / "nginx.out", "w") as out:
            self.procs.append(subprocess.Popen(base, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_until(lambda: self.procs[-1].poll() is not None or _port_open(port), timeout=15,
                   message=f"nginx listening on {port}")
        assert self.procs[-1].poll() is None, f"nginx exited: {(run_dir / 'error.log').read_text()}"
        return run_dir

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)  # graceful shutdown
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
