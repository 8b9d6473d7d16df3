"""The real processes a benchmark measures: redis-server, the sim, and the gateway on one core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from support import free_port, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator

GATEWAY_CPU = 1  # the gateway gets a core of its own; load and Redis share the other
LOAD_CPU = 0


@dataclass(frozen=True)
class Server:
    """A running server: its loopback URL and its process id (for its CPU and memory)."""

    url: str
    pid: int


@contextmanager
def process(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run a server until the block ends (taskset execs, so the pid is the server's own)."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        yield Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def pinned(command: list[str], cpu: int) -> list[str]:
    """The command on one core, when taskset is there."""
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


@contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server; yields its redis:// URL."""
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    command = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    with process(pinned(command, LOAD_CPU), port):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def sim_server(*args: str) -> Iterator[Server]:
    """The simulated LM Studio, on the load generator's core."""
    port = free_port()
    command = [sys.executable, "-m", "sim", "--port", str(port), *args]
    with process(pinned(command, LOAD_CPU), port) as server:
        yield server


@contextmanager
def sim(*args: str) -> Iterator[str]:
    """The simulated LM Studio; yields its URL."""
    with sim_server(*args) as server:
        yield server.url


@contextmanager
def gateway_server(**settings: object) -> Iterator[Server]:
    """`llmgw serve` pinned to a core of its own, configured by LLMGW_* variables."""
    port = free_port()
    env = {**os.environ, "LLMGW_PORT": str(port), "LLMGW_LOG_LEVEL": "WARNING"}
    env |= {"LLMGW_HEALTH_INTERVAL": "0"}  # no active check racing the measured requests
    env.update({f"LLMGW_{name.upper()}": str(value) for name, value in settings.items()})
    command = pinned([sys.executable, "-m", "app", "serve"], GATEWAY_CPU)
    with process(command, port, env) as server:
        yield server


@contextmanager
def gateway(**settings: object) -> Iterator[str]:
    """`llmgw serve` on its own core; yields its URL."""
    with gateway_server(**settings) as server:
        yield server.url
