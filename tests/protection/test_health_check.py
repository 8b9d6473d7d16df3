"""The active check against real stand-ins of a broken model side: which failures may be a busy
host's (no answer in time, a 503), and which say at once that it is down."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
from fault_servers import answering_server, silent_server
from support import free_port

from app.protection import health_check
from app.protection.health_check import HealthReport, check_upstream
from app.protection.outage import OutageClass

if TYPE_CHECKING:
    import pytest


def check(url: str) -> HealthReport:
    async def scenario() -> HealthReport:
        async with httpx.AsyncClient(base_url=url) as client:
            return await check_upstream(client, "m")

    return asyncio.run(scenario())


def test_no_answer_in_time_may_be_a_busy_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts and does not answer within the check's time: a busy check."""
    monkeypatch.setattr(health_check, "CHECK_TIMEOUT", 0.2)
    with silent_server() as url:
        assert check(url) == HealthReport(OutageClass.TUNNEL, busy=True)


def test_a_503_may_be_a_busy_host() -> None:
    """A server that says 503 to the listing is busy, not yet down."""
    with answering_server(503, {"Content-Type": "application/json"}, b'{"error":"busy"}') as url:
        assert check(url) == HealthReport(OutageClass.MODEL_SERVER_DOWN, busy=True)


def test_a_refused_connection_is_down() -> None:
    """Nothing listening: the tunnel class, and no busy host to wait for."""
    assert check(f"http://127.0.0.1:{free_port()}") == HealthReport(OutageClass.TUNNEL)


def test_nginxs_own_502_is_down() -> None:
    """nginx answering 502 for the model server behind it: down, not busy."""
    with answering_server(502, {"Server": "nginx"}, b"<html>502</html>") as url:
        assert check(url) == HealthReport(OutageClass.MODEL_SERVER_DOWN)
