"""Run the real nginx with infra/home's site template, laid out as the official nginx image does.

The image renders /etc/nginx/templates/default.conf.template into /etc/nginx/conf.d/default.conf
with envsubst, for the variables its NGINX_ENVSUBST_FILTER lets through, and its nginx.conf
includes conf.d/*.conf. Here the prefix is a temporary folder in place of /etc/nginx, and the
main nginx.conf differs from the image's only where a non-root run needs it: temp paths.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support import eventually, free_port, stop_process

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

HOME = Path(__file__).resolve().parents[2] / "infra" / "home"
TEMPLATE = HOME / "nginx" / "site.conf.template"
STOP_TIMEOUT = 5.0

# `${NAME}` or `$NAME`: the two forms envsubst replaces.
_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")

_MAIN_CONF = """\
worker_processes 1;
events { worker_connections 256; }
http {
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    include conf.d/*.conf;
}
"""


def envsubst(text: str, values: Mapping[str, str]) -> str:
    """What `envsubst '${A} ${B}'` does: replace the named variables, leave every other `$x`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def map_lines(keys: Iterable[str]) -> str:
    """A map include file that sends each key to 1, as tokens.map and cors-origins.map do."""
    return "".join(f'"{key}" 1;\n' for key in keys)


@dataclass(frozen=True, kw_only=True)
class SiteFiles:
    """What the home machine provides besides the template: its variables and its map files."""

    upstream: str
    listen: str
    tokens_map: str
    origins_map: str
    lmstudio_token: str = ""  # compose always sets LLMGW_LMSTUDIO_API_TOKEN, empty by default


def lay_out(prefix: Path, site: SiteFiles) -> Path:
    """Write prefix as the image's /etc/nginx is once its entrypoint ran; return nginx.conf."""
    (prefix / "llmgw").mkdir(parents=True)
    (prefix / "llmgw" / "tokens.map").write_text(site.tokens_map)
    (prefix / "llmgw" / "cors-origins.map").write_text(site.origins_map)
    (prefix / "conf.d").mkdir()
    values = {
        "LLMGW_LMSTUDIO_ADDRESS": site.upstream,
        "LLMGW_NGINX_LISTEN": site.listen,
        "LLMGW_LMSTUDIO_API_TOKEN": site.lmstudio_token,
    }
    (prefix / "conf.d" / "default.conf").write_text(envsubst(TEMPLATE.read_text(), values))
    main = prefix / "nginx.conf"
    main.write_text(_MAIN_CONF)
    return main


def nginx_command(binary: str, prefix: Path, *extra: str) -> list[str]:
    """`nginx -p prefix -c prefix/nginx.conf`, in the foreground, pid file under prefix."""
    settings = "daemon off; pid nginx.pid; error_log stderr notice;"
    return [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", settings, *extra]


@dataclass
class NginxHandle:
    """A running nginx: where it listens and where its access log (its stdout) goes."""

    url: str
    access_log: Path
    error_log: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_nginx(
    binary: str,
    prefix: Path,
    *,
    upstream: str,
    tokens: Iterable[str],
    origins: Iterable[str] = (),
    lmstudio_token: str = "",
) -> Iterator[NginxHandle]:
    """Start nginx on a free loopback port in front of upstream; stop it on exit."""
    port = free_port()
    site = SiteFiles(
        upstream=upstream,
        listen=f"127.0.0.1:{port}",
        tokens_map=map_lines(tokens),
        origins_map=map_lines(origins),
        lmstudio_token=lmstudio_token,
    )
    lay_out(prefix, site)
    access_log, error_log = prefix / "access.log", prefix / "error.log"
    with access_log.open("wb") as stdout, error_log.open("wb") as stderr:
        process = subprocess.Popen(nginx_command(binary, prefix), stdout=stdout, stderr=stderr)
    handle = NginxHandle(f"http://127.0.0.1:{port}", access_log, error_log, process)
    try:
        _wait_listening(handle, port)
        yield handle
    finally:
        stop_process(process, STOP_TIMEOUT)


def _wait_listening(handle: NginxHandle, port: int) -> None:
    def ready() -> bool:
        if handle.process.poll() is not None:
            pytest.fail(f"nginx exited at start:\n{handle.error_log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    if not eventually(ready):
        pytest.fail(f"nginx did not listen on {port}:\n{handle.error_log.read_text()}")


def shipped_maps(*, upstream: str, listen: str, lmstudio_token: str = "") -> SiteFiles:
    """The map files as shipped (tokens.map copied from its .example), with the given variables."""
    return SiteFiles(
        upstream=upstream,
        listen=listen,
        lmstudio_token=lmstudio_token,
        tokens_map=(HOME / "nginx" / "tokens.map.example").read_text(),
        origins_map=(HOME / "nginx" / "cors-origins.map").read_text(),
    )
