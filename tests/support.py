"""Helpers shared by the tests: free ports, waiting for servers and stopping them, skipping on
missing binaries, a redis-server of a test's own, a self-signed certificate, reading a sample
from a metrics exposition, a little HTTP server on a thread."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

# A Lua script busy for 300 ms of Redis's clock before it answers: a reply that comes late.
SLOW_SCRIPT = """
local function micros() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end
local start = micros()
repeat until micros() - start > 300000
return 'slow'
"""


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[str]:
    """The URL of an HTTP server answering with this handler on a loopback port, until the
    block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def flushed(redis_url: str) -> str:
    """The Redis URL, its database emptied: for a module's own processes, which must not read
    what an earlier test on this worker left (a probe's snapshot, a wake, a window)."""
    import redis  # noqa: PLC0415 - not every helper's user needs redis-py

    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return redis_url


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Block until something accepts connections on host:port, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listened on {host}:{port} within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a server we started, and kill it if it has not exited within `timeout`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def require_binary(name: str) -> str:
    """Path of a binary the test needs: skip locally when missing, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install it, or run .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def start_redis(port: int, *options: str) -> subprocess.Popen[bytes]:
    """A redis-server of the test's own, on a fixed port (so it can be restarted there)."""
    binary = require_binary("redis-server")
    command = [binary, "--port", str(port), "--save", "", "--appendonly", "no", *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def self_signed_certificate(folder: Path, days: int = 1) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for localhost and 127.0.0.1, valid for `days`
    days, made by openssl as an operator would make one."""
    binary = require_binary("openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [binary, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def eventually(check: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll check until it is truthy or the timeout passes; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a text exposition (labels matched exactly, any order)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if found == labels:
            return float(match.group(2))
    raise AssertionError(f"no sample {name}{labels}")
