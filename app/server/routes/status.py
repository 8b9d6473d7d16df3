"""GET /api/status: one word for the chat widget (ok, busy, degraded, down), and when to retry.
It reveals no host name, URL or upstream detail: the public reads it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from litestar import Request, get

from app.protection.breaker import BreakerState

if TYPE_CHECKING:
    from app.server.services import Services

OUTAGE_RETRY = 30


def public_state(services: Services) -> dict[str, object]:
    """The state a visitor may know about, with a retry hint when it is not ok: down when no
    host can answer, degraded while some home host is out and others (or the fallback)
    answer."""
    hosts = services.hosts
    breaker = hosts.site_breaker()
    fallback = hosts.fallback is not None and hosts.fallback.serving()
    if breaker is BreakerState.OPEN and not fallback:
        return {"state": "down", "retry_after": max(1, round(hosts.retry_after()))}
    if hosts.site_outage() is not None and not fallback:
        return {"state": "down", "retry_after": OUTAGE_RETRY}
    if breaker is BreakerState.OPEN or hosts.site_outage() is not None or hosts.some_out():
        return {"state": "degraded"}
    if (
        services.governor.factor < 1.0
        and services.governor.pressure > services.governor.config.soft
    ):
        return {"state": "busy", "retry_after": 10}
    probe_lost = services.watcher.ever_seen() and not services.watcher.fresh()
    if services.limiter.fallback_active or probe_lost or breaker is BreakerState.HALF_OPEN:
        return {"state": "degraded"}
    return {"state": "ok"}


@get("/api/status", summary="Whether chatting works now", cache=False)
async def status(request: Request[Any, Any, Any]) -> dict[str, object]:
    """ok, busy, degraded or down, for the chat widget."""
    return public_state(request.app.state.services)


def operator_detail(services: Services) -> dict[str, object]:
    """What /readyz adds for the owner: states and numbers, still no host names or URLs."""
    limits = services.governor.limits()
    hosts = services.hosts
    doors = sorted({str(door) for host in hosts.home for door in host.monitor.refused_doors()})
    return {
        "breaker": str(hosts.site_breaker()),
        "outage": hosts.site_outage(),
        "model": str(hosts.home[0].monitor.model_state()),
        "token_refused": doors,
        "fallback_active": services.limiter.fallback_active,
        "governor": {
            "pressure": round(services.governor.pressure, 3),
            "factor": round(services.governor.factor, 3),
            "global_limit": limits.global_limit,
            "global_token_limit": limits.global_tokens,
            "inflight_cap": limits.inflight_cap,
        },
        "probes_fresh": len(services.watcher.fresh(time.monotonic())),
        "lanes": lanes_detail(services),
        "hosts": hosts_detail(services),
        "pass": services.passes.detail(),
    }


def hosts_detail(services: Services) -> list[dict[str, object]]:
    """Each host by its configured name only (no URL, no model host's own name): whether it
    takes new conversations, its breaker, outage, model, pressure, factor, public in-flight
    cap, and this replica's streams on it."""
    mine = services.limiter.inflight_by_host()
    hosts = services.hosts
    every = (*hosts.home, *([hosts.fallback] if hosts.fallback is not None else []))
    return [
        {
            "name": host.name,
            "fallback": host.fallback,
            "serving": host.serving(),
            "breaker": str(host.breaker.state),
            "outage": None if host.monitor.outage is None else str(host.monitor.outage),
            "model": str(host.monitor.model_state()),
            "pressure": round(host.governor.pressure, 3),
            "factor": round(host.governor.factor, 3),
            "inflight_cap": host.governor.limits().inflight_cap
            if not host.fallback
            else host.config.max_inflight,
            "inflight": mine.get(host.name, 0),
        }
        for host in every
    ]


def lanes_detail(services: Services) -> dict[str, dict[str, int]]:
    """Per lane: its in-flight cap now (over every lane's streams, across replicas), this
    replica's streams of it in flight, and its requests waiting in this replica's line."""
    caps = services.hosts.lane_caps()
    inflight = services.limiter.inflight_by_lane()
    queued = services.waiting_room.waiting_by_lane()
    return {
        lane: {"inflight_cap": cap, "inflight": inflight[lane], "queued": queued[lane]}
        for lane, cap in caps.items()
    }
