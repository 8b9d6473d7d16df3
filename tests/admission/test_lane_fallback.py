"""Lanes while Redis is away: the in-process fallback holds the same rules as the script (the
owner's held-back place, a key's streams at once, keyed lanes outside the public's windows),
and the limiter counts this process's streams per lane on either path."""

from __future__ import annotations

import asyncio

from support import free_port

from app.access.keys import Lane
from app.admission.decision import Limit, Limits, Scope
from app.admission.fallback import LocalAdmitter
from app.admission.limiter import Limiter
from app.admission.redis_admitter import RedisAdmitter
from app.protection.governor import GovernorConfig, PressureGovernor
from app.server.services import redis_client
from app.telemetry import GatewayMetrics

GOVERNOR = PressureGovernor(
    Limits(global_limit=1000, visitor_limit=1000, inflight_cap=4),
    GovernorConfig(stale_factor=1.0),
    owner_reserved=1,
)


def owner(local: LocalAdmitter, name: str, streams: int = 0, requests: int = 0) -> bool:
    scope = Scope(f"key:{name}", Limit.KEY, requests)
    decision = local.admit(
        (),
        GOVERNOR.limits(Lane.OWNER),
        scopes=(scope,),
        lane=Lane.OWNER,
        concurrency=(name, streams),
    )
    return decision.admitted


def test_the_fallback_holds_the_owners_place_back() -> None:
    """Visitors get 3 of the 4 places here too; the owner gets the 4th."""
    local = LocalAdmitter(window_seconds=60)
    public = [local.admit([f"v{n}"], GOVERNOR.limits()).admitted for n in range(4)]
    assert public == [True, True, True, False]
    assert owner(local, "laptop")


def test_the_fallback_counts_a_keys_streams_at_once() -> None:
    """The key's 3rd stream is refused by its concurrency of 2, another key's is not, and a
    stream's end frees its place."""
    local = LocalAdmitter(window_seconds=60)
    limits = GOVERNOR.limits(Lane.OWNER)
    ids = [local.admit((), limits, lane=Lane.OWNER, concurrency=("ab", 2)).lease for _ in range(2)]
    third = local.admit((), limits, lane=Lane.OWNER, concurrency=("ab", 2))
    assert (third.admitted, third.limit, third.quota, third.lane) == (
        False,
        Limit.CONCURRENCY,
        2,
        Lane.OWNER,
    )
    assert owner(local, "b", streams=1)
    assert ids[0] is not None
    local.release(ids[0])
    assert owner(local, "ab", streams=2)


def test_the_fallback_counts_keyed_lanes_in_their_own_windows_only() -> None:
    """A keyed request spends its key's window, not everyone's or a visitor's."""
    local = LocalAdmitter(window_seconds=60)
    tight = Limits(global_limit=1, visitor_limit=1, inflight_cap=100)
    scope = (Scope("key:laptop", Limit.KEY, 2),)
    keyed = [local.admit(["v"], tight, scopes=scope, lane=Lane.OWNER) for _ in range(3)]
    assert [d.admitted for d in keyed] == [True, True, False]
    assert (keyed[0].limit, keyed[0].quota, keyed[2].limit) == (Limit.KEY, 2, Limit.KEY)
    assert local.admit(["v"], tight).admitted


def offline_limiter(share: float = 0.5) -> Limiter:
    unreachable = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    return Limiter(
        unreachable,
        RedisAdmitter(unreachable, prefix="llmgw", window_seconds=60, lease_seconds=30),
        LocalAdmitter(window_seconds=60),
        fallback_share=share,
        lease_max_age=60,
        metrics=GatewayMetrics(),
    )


def test_the_fallbacks_share_keeps_the_owners_place_whole() -> None:
    """Half of each cap on the fallback, but the owner's held-back place is not halved: the
    public has 1 place (half of 3), the owner 2 (half of 3, and its own)."""
    limiter = offline_limiter()
    assert limiter.fallback_limits(GOVERNOR.limits()).inflight_cap == 1
    assert limiter.fallback_limits(GOVERNOR.limits(Lane.OWNER)).inflight_cap == 2

    async def scenario() -> list[bool]:
        visitors = [await limiter.admit([f"v{n}"], GOVERNOR.limits()) for n in range(2)]
        keyed = await limiter.admit((), GOVERNOR.limits(Lane.OWNER), lane=Lane.OWNER)
        return [d.admitted for d in (*visitors, keyed)]

    assert asyncio.run(scenario()) == [True, False, True]


def test_the_limiter_counts_its_streams_per_lane() -> None:
    """Each admitted stream counts in its lane until its end; a refusal counts nowhere."""
    limiter = offline_limiter(share=1.0)

    async def scenario() -> list[dict[str, int]]:
        visitors = [await limiter.admit([f"v{n}"], GOVERNOR.limits()) for n in range(2)]
        member = await limiter.admit((), GOVERNOR.limits(Lane.MEMBER), lane=Lane.MEMBER)
        shed = await limiter.admit(["w"], GOVERNOR.limits())  # 3 of 3 taken
        keyed = await limiter.admit((), GOVERNOR.limits(Lane.OWNER), lane=Lane.OWNER)
        assert [d.admitted for d in (*visitors, member, shed, keyed)] == [
            True,
            True,
            True,
            False,
            True,
        ]
        held = limiter.inflight_by_lane()
        await limiter.release(keyed)
        await limiter.release(visitors[0])
        return [held, limiter.inflight_by_lane()]

    held, after = asyncio.run(scenario())
    assert held == {"owner": 1, "member": 1, "public": 2}
    assert after == {"owner": 0, "member": 1, "public": 1}
