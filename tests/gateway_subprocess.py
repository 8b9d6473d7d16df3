"""The gateway as operators run it (`python -m app serve`, configured by LLMGW_* variables) in
its own process, with everything it writes to stdout and stderr captured in a file; and a
private redis-server that requires a password."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev extra
import pytest
from support import free_port, require_binary, stop_process, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss(self) -> int:
        """Resident memory of the gateway process, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)


def gateway_environment(port: int, settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any LLMGW_* variable, plus these settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LLMGW_")}
    env |= {"LLMGW_HOST": "127.0.0.1", "LLMGW_PORT": str(port)}
    return env | {f"LLMGW_{name.upper()}": value for name, value in settings.items()}


@contextlib.contextmanager
def gateway_process(log: Path, **settings: str) -> Iterator[GatewayProcess]:
    """`python -m app serve` with these settings, until the block ends; stdout and stderr go
    to `log`."""
    with gateway_processes([log], **settings) as (gateway,):
        yield gateway


@contextlib.contextmanager
def gateway_processes(logs: list[Path], **settings: str) -> Iterator[list[GatewayProcess]]:
    """One gateway per log file, all started before any is waited for (replicas of one
    deployment); each one's stdout and stderr go to its log."""
    gateways = []
    try:
        for log in logs:
            port = free_port()
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "app", "serve"],
                    env=gateway_environment(port, settings),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            gateways.append(GatewayProcess(f"http://127.0.0.1:{port}", process, log))
        for gateway in gateways:
            _wait_healthy(gateway)
        yield gateways
    finally:
        for gateway in gateways:
            stop_process(gateway.process, STOP_TIMEOUT)


def _wait_healthy(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            pytest.fail(f"the gateway exited at start:\n{gateway.log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{gateway.url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"the gateway did not answer /healthz:\n{gateway.log.read_text()}")


@dataclass
class PasswordRedis:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, password: str) -> str:
        return f"redis://:{password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process, STOP_TIMEOUT)


@contextlib.contextmanager
def redis_with_password(password: str, port: int | None = None) -> Iterator[PasswordRedis]:
    """A private redis-server that requires `password` (given on stdin, not on its command
    line); on `port` when given, so a test can bring it back where it was."""
    binary = require_binary("redis-server")
    port = port or free_port()
    command = [binary, "-", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert process.stdin is not None
    process.stdin.write(f"requirepass {password}\n".encode())
    process.stdin.close()
    server = PasswordRedis(port, process)
    try:
        wait_for_port(port)
        yield server
    finally:
        server.stop()
