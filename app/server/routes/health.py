"""Liveness and readiness: /healthz says the process runs, /readyz that Redis and the model answer
(in detail, but naming no host or URL)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, route

from app.server.routes.status import hosts_detail, operator_detail

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import httpx

    from app.server.services import Services

CHECK_TIMEOUT = 2.0


class _NotReady(Exception):
    """A check that answered, but not well; its message is safe to show."""


@route("/healthz", http_method=["GET", "HEAD"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Always ok while the process serves requests."""
    return {"status": "ok"}


@route("/readyz", http_method=["GET", "HEAD"], summary="Redis and the model server are reachable")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, object]]:
    """200 when every dependency answers and LLMGW_MODEL is loaded or loadable (an LLM the
    server has), else 503; the detail names no host or URL."""
    services: Services = request.app.state.services
    home = services.hosts.home
    redis, *upstreams = await asyncio.gather(
        _timed(services.redis.ping()), *(_timed(_upstream_models(host.client)) for host in home)
    )
    # Ready while some home host answers and can chat (LLMGW_MODEL loaded or loadable).
    chatting = [
        answer["ok"] and not host.monitor.model_misconfigured()
        for host, answer in zip(home, upstreams, strict=True)
    ]
    ready = bool(any(chatting) and (redis["ok"] or services.limiter.fallback_active))
    upstream = next((u for u, ok in zip(upstreams, chatting, strict=True) if ok), upstreams[0])
    hosts = hosts_detail(services)
    for host, answer in zip(hosts, upstreams, strict=False):  # the fallback is not checked here
        host["upstream"] = answer
    body: dict[str, object] = {
        "ready": ready,
        "redis": redis,
        "upstream": upstream,
        **operator_detail(services),
        "hosts": hosts,
    }
    return Response(body, status_code=200 if ready else 503)


async def _upstream_models(client: httpx.AsyncClient) -> bool:
    response = await client.get("/v1/models", headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise _NotReady(f"status {response.status_code}")
    return True


async def _timed(check: Awaitable[object]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check
    except TimeoutError:
        return {"ok": False, "error": "timeout"}
    except _NotReady as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # any failure is a 'not ready', named by its kind: no hosts leak
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
