"""Run the real probe agent (`python -m probe`) as a process for the gateway's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def running_probe(
    redis_url: str,
    model_url: str,
    interval: float = 0.3,
    timeout: float = 0.5,
    **extra: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """A probe agent publishing every `interval` seconds, reading the sim at `model_url`;
    `extra` adds LLMGW_* variables (model="x" sets LLMGW_MODEL)."""
    env = {
        **os.environ,
        "LLMGW_REDIS_URL": redis_url,
        "LLMGW_PROBE_MODEL_URL": model_url,
        "LLMGW_PROBE_INTERVAL": str(interval),
        "LLMGW_PROBE_TIMEOUT": str(timeout),
        "LLMGW_PROBE_GPU": "sim",
        "LLMGW_PROBE_HOST": "test-host",
        "LLMGW_PROBE_METRICS_PORT": "0",
        "LLMGW_PROBE_SYNTHETIC_INTERVAL": "0",
        **{f"LLMGW_{name.upper()}": value for name, value in extra.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "probe"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
