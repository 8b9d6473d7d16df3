"""A Redis for the demo and for one-machine installs when LLMGW_REDIS_URL is not set: a private
redis-server on a Unix socket when the binary is installed, else fakeredis with Lua in process."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger("llmgw.redis")
START_TIMEOUT = 10.0


@asynccontextmanager
async def embedded_redis() -> AsyncIterator[aioredis.Redis]:
    """Yield a client to a Redis that lives exactly as long as this context."""
    binary = shutil.which("redis-server")
    if binary is None:
        import fakeredis  # noqa: PLC0415 - only needed when no redis-server is installed

        log.warning("LLMGW_REDIS_URL is not set: using embedded fakeredis (one process only)")
        client: aioredis.Redis = fakeredis.FakeAsyncRedis()
        yield client
        await client.aclose()
        return
    with tempfile.TemporaryDirectory(prefix="llmgw-redis-") as folder:
        socket_path = Path(folder) / "redis.sock"
        process = _start_server(binary, socket_path)
        try:
            log.warning(
                "LLMGW_REDIS_URL is not set: using an embedded redis-server on %s", socket_path
            )
            client = aioredis.Redis(unix_socket_path=str(socket_path), socket_timeout=3)
            yield client
            await client.aclose()
        finally:
            process.terminate()
            process.wait(timeout=5)


def _start_server(binary: str, socket_path: Path) -> subprocess.Popen[bytes]:
    command = [
        binary,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(socket_path.parent),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + START_TIMEOUT
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the embedded redis-server did not start")
        time.sleep(0.02)
    return process
