"""Admission with a safety net: Redis when it answers, an in-process fallback when it does not,
and the way back to Redis by itself. No 5xx is ever caused by Redis being down."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from app.access.keys import Lane
from app.admission.decision import SINGLE_HOST, HostSlot, Limit, refusal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio import Redis

    from app.admission.decision import Conversation, Decision, Limits, Scope
    from app.admission.fallback import LocalAdmitter
    from app.admission.redis_admitter import RedisAdmitter
    from app.telemetry import GatewayMetrics

log = logging.getLogger("llmgw.limiter")


class Limiter:
    """Chooses Redis or the fallback per request; renews this process's leases meanwhile."""

    def __init__(
        self,
        redis: Redis,
        shared: RedisAdmitter,
        local: LocalAdmitter,
        *,
        fallback_share: float,
        lease_max_age: float,
        metrics: GatewayMetrics,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self._redis = redis
        self._on_release = on_release
        self._shared = shared
        self._local = local
        self._share = fallback_share
        self._metrics = metrics
        self.fallback_active = False
        # lease -> when it was taken, for which lane, on which host: a stream that never ran its
        # cleanup stops being renewed (and counted in its lane and on its host).
        self.leases: dict[str, tuple[float, Lane, str]] = {}
        self._lease_max_age = lease_max_age

    async def admit(
        self,
        visitor_ids: Sequence[str],
        limits: Limits,
        continues: str | None = None,
        owner: str = "",
        wake_seconds: float | None = None,
        *,
        tokens: int = 0,
        scopes: Sequence[Scope] = (),
        lane: Lane = Lane.PUBLIC,
        concurrency: tuple[str, int] | None = None,
        hosts: Sequence[HostSlot] = (),
        fallback_on_full: bool = False,
    ) -> Decision:
        """The decision, from Redis while it answers and from the fallback while it does not;
        `tokens` reserved from the token windows, `scopes` counted besides the visitor's, or
        instead of the public's for a keyed `lane`, with its key's `concurrency` (name,
        streams at once; see RedisAdmitter.admit). `limits.inflight_cap` is the lane's cap
        (PressureGovernor.limits); `hosts` the model hosts to choose from (see
        RedisAdmitter.admit). The fallback does not coordinate a wake: without Redis, each
        replica may send one; it chooses among the home hosts by its own streams on each, and
        does not use the hosted fallback (its daily budget is in Redis)."""
        if not self.fallback_active:
            started = time.perf_counter()
            try:
                decision = await self._shared.admit(
                    visitor_ids,
                    limits,
                    continues,
                    owner,
                    wake_seconds,
                    tokens=tokens,
                    scopes=scopes,
                    lane=lane,
                    concurrency=concurrency,
                    hosts=hosts,
                    fallback_on_full=fallback_on_full,
                )
            except (RedisError, OSError) as exc:
                self._metrics.redis_command(time.perf_counter() - started, ok=False)
                log.warning("Redis unavailable (%s): admitting from fallback", type(exc).__name__)
                self.enter_fallback()
            else:
                if decision.path == "redis":
                    self._metrics.redis_command(time.perf_counter() - started, ok=True)
                self._hold(decision)
                return decision
        host = self._local_host(hosts)
        if host is None:
            return refusal(Limit.NO_HOST, 0, 1.0, path="fallback")
        share = self.fallback_limits(replace(limits, inflight_cap=host.cap) if hosts else limits)
        decision = self._local.admit(
            visitor_ids,
            share,
            continues,
            owner,
            tokens=tokens,
            scopes=scopes,
            lane=lane,
            concurrency=concurrency,
            host=host.name,
        )
        decision = replace(decision, host=host.name)
        self._hold(decision)
        return decision

    def _local_host(self, hosts: Sequence[HostSlot]) -> HostSlot | None:
        """The home host with the most free places by this process's own streams on each,
        times its weight (the single host when none are given), or None when none is up."""
        if not hosts:
            return HostSlot(SINGLE_HOST, 0)
        mine = self.inflight_by_host()
        up = [slot for slot in hosts if slot.up and not slot.fallback]
        if not up:
            return None
        return max(up, key=lambda slot: (slot.cap - mine.get(slot.name, 0)) * slot.weight)

    def fallback_limits(self, limits: Limits) -> Limits:
        """A conservative share of the limits, since other replicas admit on their own too;
        a lane's places held back stay whole above the share of the rest."""
        held = limits.reserved_inflight
        return replace(
            limits,
            global_limit=max(1, int(limits.global_limit * self._share)),
            inflight_cap=max(1, int((limits.inflight_cap - held) * self._share)) + held,
            global_tokens=_share(limits.global_tokens, self._share),
        )

    async def release(
        self, decision: Decision, conversation: Conversation | None = None, spent: int = 0
    ) -> None:
        """Give the in-flight place back, settle the tokens reserved against the `spent` ones
        (the unused part comes back) and, for an answered stream, remember whose conversation
        it is, here and in Redis: one round trip for all of it. A lease Redis cannot take back
        expires by itself (its reservation stays spent); an owner it cannot store is still
        known to this process."""
        lease = decision.lease
        reservation = decision.reservation if decision.admitted else None
        if lease is not None:
            self.leases.pop(lease, None)
        if reservation is not None:
            self._metrics.tokens_settled(reserved=reservation.tokens, spent=spent)
        if conversation is not None:
            self._local.remember_conversation(conversation.response_id, conversation.owner)
        if lease is not None and not lease.startswith("local:"):
            finish = self._shared.release(lease, conversation, reservation, spent, decision.host)
            await self._in_redis(finish)
            self._released()
            return
        if lease is not None:
            self._local.release(lease, reservation, spent)
            self._released()
        if conversation is not None:
            await self._in_redis(self._shared.remember_conversation(conversation))

    async def wake_ended(
        self, *, woke: bool, awake_seconds: float, host: str = SINGLE_HOST
    ) -> None:
        """Tell the other replicas the wake this process ran on `host` is over (admit.lua)."""
        if not self.fallback_active:
            ended = self._shared.wake_ended(woke=woke, awake_seconds=awake_seconds, host=host)
            await self._in_redis(ended)
        self._released()  # the head of the waiting room tries at once

    def _released(self) -> None:
        if self._on_release is not None:
            self._on_release()  # a request waiting for a place may take this one now

    @staticmethod
    async def _in_redis(write: Awaitable[None]) -> None:
        try:
            await write
        except (RedisError, OSError):
            log.debug("end of stream not written to Redis; a lease left there expires")

    async def maintain(self, every: float) -> None:
        """Renew leases while Redis answers; find the way back to it when it did not."""
        while True:
            await asyncio.sleep(every)
            try:
                if self.fallback_active:
                    await self._redis.ping()
                    self._shared.forget_refusals()
                    log.warning("Redis is back: admitting through Redis again")
                    self._set_fallback(active=False)
                for host, leases in self._live_shared_leases().items():
                    await self._shared.renew(leases, host)
            except (RedisError, OSError):
                self.enter_fallback()

    def _live_shared_leases(self) -> dict[str, list[str]]:
        """This process's live leases in Redis, by host."""
        oldest = time.monotonic() - self._lease_max_age
        self.leases = {lease: held for lease, held in self.leases.items() if held[0] >= oldest}
        by_host: dict[str, list[str]] = {}
        for lease, (_, _, host) in self.leases.items():
            if not lease.startswith("local:"):
                by_host.setdefault(host, []).append(lease)
        return by_host

    def inflight_by_lane(self) -> dict[str, int]:
        """This process's streams in flight now, per lane (every lane, 0 for none)."""
        counts = dict.fromkeys(map(str, Lane), 0)
        for _, lane, _ in self.leases.values():
            counts[lane] += 1
        return counts

    def inflight_by_host(self) -> dict[str, int]:
        """This process's streams in flight now, per host (only hosts with some)."""
        counts: dict[str, int] = {}
        for _, _, host in self.leases.values():
            counts[host] = counts.get(host, 0) + 1
        return counts

    def _hold(self, decision: Decision) -> None:
        if decision.lease is not None:
            self.leases[decision.lease] = (time.monotonic(), decision.lane, decision.host)
        if decision.reservation is not None and decision.admitted:
            self._metrics.tokens_reserved(decision.reservation.tokens)

    def enter_fallback(self) -> None:
        """Admit from this process until Redis answers a ping again."""
        self._set_fallback(active=True)

    def _set_fallback(self, *, active: bool) -> None:
        self.fallback_active = active
        self._metrics.redis_state(up=not active, fallback_active=active)


def _share(limit: int, share: float) -> int:
    """A share of a limit that may be off (0 stays 0)."""
    return max(1, int(limit * share)) if limit > 0 else 0
