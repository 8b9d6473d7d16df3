"""The upstream's health, seen from here: an active check through the tunnel every few seconds,
request failures, and the probe's word, combined into one outage diagnosis that drives the
breaker; and the governor's tick."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import httpx

from app.protection.breaker import BreakerState
from app.protection.outage import OutageClass, classify_response, from_probe, refine

if TYPE_CHECKING:
    from app.protection.breaker import CircuitBreaker
    from app.protection.governor import PressureGovernor, TtftTracker
    from app.protection.probe_watch import ProbeWatcher
    from app.telemetry import GatewayMetrics

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
        *,
        breaker: CircuitBreaker,
        watcher: ProbeWatcher,
        governor: PressureGovernor,
        ttft: TtftTracker,
        metrics: GatewayMetrics,
        interval: float,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._watcher = watcher
        self._governor = governor
        self._ttft = ttft
        self._metrics = metrics
        self._interval = interval
        self.outage: OutageClass | None = None
        self._seen_from_here: OutageClass | None = None
        self.checked = False

    def observe(self, outage: OutageClass | None) -> None:
        """What a request or a health check just showed (None: the model side answered);
        a failure is counted under the class it is diagnosed as."""
        self._seen_from_here = outage
        self._diagnose()
        if outage is not None:
            self._metrics.upstream_failure(self.outage or outage)

    def _diagnose(self) -> None:
        """Combine what we saw with the probe's word; open the breaker on an outage, and let
        trials in when it has passed."""
        probe = self._watcher.merged()
        seen = self._seen_from_here
        diagnosis = refine(seen, probe, self._watcher.ever_seen()) or from_probe(probe)
        previous, self.outage = self.outage, diagnosis
        self._metrics.upstream_outage(diagnosis)
        if diagnosis != previous:
            log.warning("upstream outage: %s", diagnosis or "none (recovered)")
        if diagnosis is not None:
            self._breaker.force_open()
        elif previous is not None and self._breaker.state is BreakerState.OPEN:
            # The outage is over: no need to sit out the cooldown. A breaker opened by
            # failing requests alone keeps its cooldown.
            self._breaker.health_restored()

    async def check_once(self) -> None:
        """Run the active check and act on what it finds."""
        outage = await check_upstream(self._client)
        self.observe(outage)
        if self.outage is None:
            self._breaker.health_confirmed()
        self.checked = True

    def tick(self) -> None:
        """Feed the governor the latest readings, and act on what the probe says by itself."""
        now = time.monotonic()
        governor = self._governor
        governor.update(now, self._watcher.merged(now), self._ttft.current(now))
        self._metrics.pressure(governor.signals, governor.pressure, governor.factor)
        base, effective = governor.base, governor.limits()
        self._metrics.limits(
            base_global=base.global_limit,
            effective_global=effective.global_limit,
            base_cap=base.inflight_cap,
            effective_cap=effective.inflight_cap,
        )
        self._watcher.forget_stale(now)
        self._diagnose()

    async def run(self) -> None:
        """Check every interval and tick every second, for the life of the app."""
        next_check = 0.0
        while True:
            self.tick()
            if self._interval and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._interval
                await self.check_once()
            await asyncio.sleep(1.0)
