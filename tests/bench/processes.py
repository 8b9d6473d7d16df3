"""The real processes a benchmark measures: redis-server, the sim, and the gateway on one core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

from support import free_port, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator

GATEWAY_CPU = 1  # the gateway gets a core of its own; load and Redis share the other


@contextmanager
def process(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server until the block ends; yield its loopback URL."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server; yields its redis:// URL."""
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    command = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    with process(command, port):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def sim(*args: str) -> Iterator[str]:
    """The simulated LM Studio."""
    port = free_port()
    with process([sys.executable, "-m", "sim", "--port", str(port), *args], port) as url:
        yield url


@contextmanager
def gateway(**settings: object) -> Iterator[str]:
    """`llmgw serve` pinned to one core, configured by LLMGW_* variables."""
    port = free_port()
    env = {**os.environ, "LLMGW_PORT": str(port), "LLMGW_LOG_LEVEL": "WARNING"}
    env.update({f"LLMGW_{name.upper()}": str(value) for name, value in settings.items()})
    command = [sys.executable, "-m", "app", "serve"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(GATEWAY_CPU), *command]
    with process(command, port, env) as url:
        yield url
