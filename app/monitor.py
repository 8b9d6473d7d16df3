"""The upstream's health, seen from here: an active check through the tunnel every few seconds,
request failures, and the probe's word, combined into one outage diagnosis that drives the
breaker; and the governor's tick."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import httpx

from app.breaker import BreakerState
from app.outage import OutageClass, classify_response, from_probe, refine

if TYPE_CHECKING:
    from app.breaker import CircuitBreaker
    from app.governor import PressureGovernor, TtftTracker
    from app.probe_watch import ProbeWatcher

log = logging.getLogger("llmgw.monitor")
CHECK_TIMEOUT = 3.0


async def check_upstream(client: httpx.AsyncClient) -> OutageClass | None:
    """One active health check through the tunnel: None when the model server is ready."""
    try:
        models = await client.get("/v1/models", timeout=CHECK_TIMEOUT)
        if models.status_code != 200:
            return _classified(models)
        loaded = await client.get("/api/v0/models", timeout=CHECK_TIMEOUT)
    except httpx.HTTPError:
        return OutageClass.TUNNEL
    if loaded.status_code != 200:  # not LM Studio: /v1/models answering is all we can know
        return None
    try:
        entries = loaded.json().get("data", [])
    except ValueError:
        return None
    ready = any(entry.get("state") == "loaded" for entry in entries if isinstance(entry, dict))
    return None if ready else OutageClass.MODEL_NOT_LOADED


def _classified(response: httpx.Response) -> OutageClass:
    server = response.headers.get("server")
    return classify_response(response.status_code, server, response.content[:4096]) or (
        OutageClass.MODEL_SERVER_DOWN
    )


class UpstreamMonitor:
    """Owns the current outage class; opens the breaker on one, lets trials in when it ends."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker,
        watcher: ProbeWatcher,
        governor: PressureGovernor,
        ttft: TtftTracker,
        *,
        interval: float,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._watcher = watcher
        self._governor = governor
        self._ttft = ttft
        self._interval = interval
        self.outage: OutageClass | None = None
        self.checked = False

    def observe(self, outage: OutageClass | None) -> None:
        """A diagnosis from a request or a health check; the probe's word can sharpen it."""
        probe = self._watcher.merged()
        diagnosis = refine(outage, probe, self._watcher.ever_seen()) or from_probe(probe)
        if diagnosis != self.outage:
            log.warning("upstream outage: %s", diagnosis or "none (recovered)")
        self.outage = diagnosis
        if diagnosis is not None:
            self._breaker.force_open()
        elif self._breaker.state is BreakerState.OPEN:
            self._breaker.health_restored()

    async def check_once(self) -> None:
        """Run the active check and act on what it finds."""
        self.observe(await check_upstream(self._client))
        self.checked = True

    def tick(self) -> None:
        """Feed the governor the latest probe and gateway readings."""
        now = time.monotonic()
        self._governor.update(now, self._watcher.merged(now), self._ttft.current(now))

    async def run(self) -> None:
        """Check every interval and tick every second, for the life of the app."""
        next_check = 0.0
        while True:
            self.tick()
            if self._interval and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._interval
                await self.check_once()
            await asyncio.sleep(1.0)
