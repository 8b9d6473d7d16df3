"""Token windows while Redis is away: the in-process fallback reserves, refuses, refunds and
rolls over as the script does, per process, on its share of everyone's budget."""

from __future__ import annotations

import asyncio
import time

from support import free_port

from app.admission.decision import Limit, Limits
from app.admission.fallback import LocalAdmitter
from app.admission.limiter import Limiter
from app.admission.redis_admitter import RedisAdmitter
from app.server.services import redis_client
from app.telemetry import GatewayMetrics

ROOMY = 10_000


def tokens(global_tokens: int = 0, visitor_tokens: int = 0) -> Limits:
    return Limits(ROOMY, ROOMY, ROOMY, global_tokens=global_tokens, visitor_tokens=visitor_tokens)


def test_the_fallback_reserves_refuses_and_refunds() -> None:
    """A reservation that does not fit is refused by tokens, naming whose window; the stream's
    end gives back the unused part, which makes room again."""
    local = LocalAdmitter(window_seconds=60)
    limits = tokens(global_tokens=2_000, visitor_tokens=1_000)
    first = local.admit(["a"], limits, tokens=900)
    own = local.admit(["a"], limits, tokens=200)
    everyone = local.admit(["b"], limits, tokens=900)
    assert first.admitted
    assert first.reservation is not None
    assert [name for name, _ in first.reservation.windows] == ["global", "visitor:a"]
    assert (own.limit, own.whose, own.path) == (Limit.TOKENS, Limit.VISITOR, "fallback")
    assert everyone.admitted
    refused = local.admit(["c"], limits, tokens=300)
    assert (refused.limit, refused.whose) == (Limit.TOKENS, Limit.GLOBAL)
    assert first.lease is not None
    local.release(first.lease, first.reservation, spent=100)
    assert local.admit(["c"], limits, tokens=300).admitted  # 100 + 900 + 300 fit in 2,000
    assert local.admit(["a"], limits, tokens=650).admitted  # 100 + 650 fit a's 1,000 again


def test_a_fallback_window_that_rolled_over_gets_nothing_back() -> None:
    """A reservation made in a window that has since reset is not refunded into the new one."""
    local = LocalAdmitter(window_seconds=1)
    limits = tokens(global_tokens=1_000)
    old = local.admit(["a"], limits, tokens=800)
    time.sleep(1.05)
    new = local.admit(["b"], limits, tokens=600)
    assert old.lease is not None
    local.release(old.lease, old.reservation, spent=0)
    assert new.admitted
    assert not local.admit(["c"], limits, tokens=401).admitted  # 600 held: not 600 - 800


def test_with_redis_down_each_gateway_takes_its_share_of_the_token_budget() -> None:
    """Redis unreachable: the limiter admits from the fallback on its share of everyone's token
    window (the visitor's stays whole), and settles there; the metrics count it."""
    unreachable = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    metrics = GatewayMetrics()
    limiter = Limiter(
        unreachable,
        RedisAdmitter(unreachable, prefix="llmgw", window_seconds=60, lease_seconds=30),
        LocalAdmitter(window_seconds=60),
        fallback_share=0.5,
        lease_max_age=60,
        metrics=metrics,
    )
    limits = tokens(global_tokens=4_000, visitor_tokens=4_000)

    async def scenario() -> list[bool]:
        first = await limiter.admit(["a"], limits, tokens=1_500)
        second = await limiter.admit(["b"], limits, tokens=1_500)  # 3,000 > half of 4,000
        await limiter.release(first, spent=400)
        third = await limiter.admit(["b"], limits, tokens=1_500)
        return [first.admitted, second.admitted, third.admitted, first.path == "fallback"]

    assert asyncio.run(scenario()) == [True, False, True, True]
    assert limiter.fallback_active
    assert _counter(metrics, "llmgw_tokens_reserved") == 3_000
    assert _counter(metrics, "llmgw_tokens_spent") == 400
    assert _counter(metrics, "llmgw_tokens_refunded") == 1_100


def _counter(metrics: GatewayMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_total")
    assert value is not None
    return value
