"""Run a real gateway (uvicorn on a loopback port) in a thread of the test process."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn
from support import free_port

from app.server.app import create_app
from app.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True)
class GatewayHandle:
    url: str
    settings: Settings


@contextmanager
def running_gateway(**overrides: object) -> Iterator[GatewayHandle]:
    """A gateway with these settings, serving until the block ends. Unless a test says
    otherwise, the governor starts relaxed (no probe runs) and no active health check races
    the test's own requests."""
    port = free_port()
    defaults: dict[str, object] = {"probe_stale_factor": 1.0, "health_interval": 0}
    settings = load_settings(host="127.0.0.1", port=port, **{**defaults, **overrides})
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        http="httptools",
        proxy_headers=False,
        log_level="warning",
        lifespan="on",
        # A stream a test left open is cut after 5 s: the gateway must not outlive its test and
        # go on talking to the worker's shared Redis (it once counted in another test's stats).
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield GatewayHandle(url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
