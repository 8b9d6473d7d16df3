"""Admission: each scope's fixed windows (requests, and tokens reserved) and the in-flight lease
set, checked and spent in one Redis round trip (app/admission/lua/admit.lua); the stream's end
settles the reservation in the round trip that releases the lease (lua/finish.lua)."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from importlib import resources
from typing import TYPE_CHECKING

from app.access.keys import Lane
from app.admission.decision import (
    SINGLE_HOST,
    Conversation,
    Decision,
    HostSlot,
    Limit,
    Limits,
    Reservation,
    Scope,
    public_scopes,
    refusal,
)
from app.admission.redis_script import LuaScript

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from redis.asyncio import Redis

    from app.admission.redis_wire import RedisWire

ADMIT_SCRIPT = resources.files("app.admission").joinpath("lua/admit.lua").read_text()
RENEW_SCRIPT = resources.files("app.admission").joinpath("lua/renew.lua").read_text()
FINISH_SCRIPT = resources.files("app.admission").joinpath("lua/finish.lua").read_text()
WINDOW_FULL, TOKENS_FULL, SHED, NOT_OWNER, WAKING, KEY_STREAMS_FULL = 1, 2, 3, 4, 5, 6
NO_HOST, FALLBACK_SPENT = 7, 8
# When the fallback may answer (admit.lua): no home host is up; or also when all are full.
FALLBACK_WHEN_OUT, FALLBACK_WHEN_FULL = "1", "2"
# How long past the end of its UTC day the fallback's budget key lives (a replica whose clock
# is a little behind still finds it).
BUDGET_GRACE_MS = 3_600_000
# A lease id's lane, as one letter (app/admission/lua/admit.lua reads the end of the id).
LANE_MARKS = {Lane.OWNER: "o", Lane.MEMBER: "m", Lane.PUBLIC: "p"}
# How long a visitor may continue a conversation (LM Studio keeps stored responses longer).
CONVERSATION_SECONDS = 24 * 3600
# Spent visitor windows remembered per gateway process (about 200 bytes each).
MAX_REMEMBERED_VISITORS = 10_000


class RedisAdmitter:
    """Runs the admission script; remembers a full global window, and each visitor whose own
    window is spent, so floods skip Redis until the window resets (a fixed window, once spent,
    stays spent until then)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        window_seconds: int,
        lease_seconds: float,
        wire: RedisWire | None = None,
    ) -> None:
        self._redis = redis
        # The scripts go by the pipelined wire when there is one, else by redis-py's pool.
        self._admit = LuaScript(redis, ADMIT_SCRIPT, wire)
        self._renew = LuaScript(redis, RENEW_SCRIPT, wire)
        self._finish = LuaScript(redis, FINISH_SCRIPT, wire)
        # Lease ids: unique across replicas by a random prefix, cheap within one by a counter.
        self._lease_prefix = secrets.token_hex(6) + "-"
        self._lease_numbers = itertools.count()
        # One hash tag for every key of an admission, so a Redis Cluster keeps them in one slot.
        self._window_prefix = f"{{{prefix}}}:window:"
        self._tokens_prefix = f"{{{prefix}}}:tokens:"
        self.inflight_key = f"{{{prefix}}}:inflight"
        self._conversation_prefix = f"{{{prefix}}}:conversation:"
        self.wake_key = f"{{{prefix}}}:wake"
        self._prefix = prefix
        self._window_ms = window_seconds * 1000
        self._lease_ms = int(lease_seconds * 1000)
        self._global_closed_until = 0.0
        self._closed_at_limit = 0
        # visitor ids -> (spent until, at which visitor limit); bounded, see _close_visitor.
        self._visitors_closed: dict[tuple[str, ...], tuple[float, int]] = {}

    def leases_key(self, host: str) -> str:
        """A host's in-flight lease set (the single host's keeps its name from before hosts)."""
        return self.inflight_key if host == SINGLE_HOST else f"{self.inflight_key}:{host}"

    async def streams_on(self, host: str) -> int:
        """Every replica's streams on a host now: its leases not expired (their scores are
        their expiry, in Redis's milliseconds; this host's clock is close enough)."""
        now_ms = int(time.time() * 1000)
        return int(await self._redis.zcount(self.leases_key(host), now_ms, "+inf"))

    def host_wake_key(self, host: str) -> str:
        """A host's wake: one request loads its model asleep, across replicas."""
        return self.wake_key if host == SINGLE_HOST else f"{self.wake_key}:{host}"

    def fallback_budget(self, day: str) -> str:
        """The fallback's tokens spent on a UTC day, a token window settled like the others."""
        return f"fallback:{day}"

    @staticmethod
    def _visitor_shares(request: _Request, budget: str) -> tuple[str, ...]:
        """Each visitor id's share of the fallback's day (`budget`), as token windows (keyed
        lanes have none: their keys' own windows bound them)."""
        return tuple(f"{budget}:{s.name}" for s in request.scopes if s.whose is Limit.VISITOR)

    async def load(self) -> None:
        """Load the scripts into Redis now, so the first request needs a single EVALSHA."""
        for script in (self._admit, self._renew, self._finish):
            await self._redis.script_load(script.source)

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
        """Admit one request for a visitor known by these (hashed) ids, or say why not.
        `continues` is a previous response id, which must have been given to `owner`;
        `wake_seconds`, given while the model is asleep, is how long its wake may take;
        `tokens` is what to reserve in the token windows that are on (the continued
        conversation's size on record is added to it); `scopes` are further parties to count
        against (a key's), checked before the visitor's. A keyed `lane` is counted in its
        `scopes` only, not in the public's windows (everyone's, the visitor's);
        `concurrency` is its key's name and how many streams it may have at once (0: any).
        `hosts` are the model hosts to choose from (none given: the single host, with the
        lane's cap, asleep when `wake_seconds` is given); the fallback among them answers only
        when no home host is up, or also when all are full with `fallback_on_full`."""
        now = time.monotonic()
        if not hosts:
            asleep = wake_seconds is not None
            hosts = (HostSlot(SINGLE_HOST, limits.inflight_cap, asleep=asleep),)
        slots = tuple(hosts)
        if lane is not Lane.PUBLIC:
            key, streams = concurrency or ("", 0)
            request = _Request(
                tuple(scopes),
                continues,
                owner,
                wake_seconds,
                tokens,
                slots,
                fallback_on_full,
                key,
                streams,
            )
            _, decision = await self._run(now, request, limits, lane)
            return replace(decision, lane=lane)
        if now < self._global_closed_until and limits.global_limit <= self._closed_at_limit:
            reset = self._global_closed_until - now
            return refusal(Limit.GLOBAL, limits.global_limit, reset, path="local")
        ids = tuple(visitor_ids)
        closed = self._visitors_closed.get(ids)
        if closed is not None:
            if now < closed[0] and limits.visitor_limit <= closed[1]:
                return refusal(Limit.VISITOR, limits.visitor_limit, closed[0] - now, path="local")
            del self._visitors_closed[ids]  # its window has reset (or the limit was raised)
        every = public_scopes(visitor_ids, limits, scopes)
        request = _Request(every, continues, owner, wake_seconds, tokens, slots, fallback_on_full)
        status, decision = await self._run(now, request, limits, lane)
        if status == WINDOW_FULL and decision.limit is Limit.VISITOR:
            self._close_visitor(ids, now + decision.reset_seconds, limits)
        return decision

    async def _run(
        self, now: float, request: _Request, limits: Limits, lane: Lane
    ) -> tuple[int, Decision]:
        """One admission script: its status, and the decision it makes."""
        # The lease id ends with its lane and key, so the script can count a key's streams.
        mark = f"|{LANE_MARKS[lane]}|{request.key}"
        lease = f"{self._lease_prefix}{next(self._lease_numbers):x}{mark}"
        keys = [self._conversation_prefix + (request.continues or "-")]
        fallback, budget_ms, share = "0", 0, 0
        # The fallback's day budget and each visitor id's share of it: windows it settles.
        fallback_windows: tuple[str, ...] = ()
        args: list[int | str] = []
        for slot in request.hosts:
            if slot.fallback:
                day, budget_ms = _utc_day()
                budget = self.fallback_budget(day)
                second = self._tokens_prefix + budget
                fallback = FALLBACK_WHEN_FULL if request.fallback_on_full else FALLBACK_WHEN_OUT
                share = slot.share
                fallback_windows = (
                    budget,
                    *(self._visitor_shares(request, budget) if share else ()),
                )
                args += (slot.name, slot.budget, slot.cap, "uf")
            else:
                second = self.host_wake_key(slot.name)
                flags = "".join(
                    flag
                    for flag, on in (("u", slot.up), ("a", slot.asleep), ("r", slot.recovering))
                    if on
                )
                args += (slot.name, slot.cap, f"{slot.weight:.6g}", flags or "-")
            keys += (self.leases_key(slot.name), second)
        args = [
            self._window_ms,
            lease,
            self._lease_ms,
            1000,
            request.owner if request.continues else "",
            int((request.wake_seconds or 0) * 1000),
            request.tokens,
            mark,
            request.streams,
            len(request.hosts),
            fallback,
            budget_ms,
            0,
            share,
            *args,
        ]
        for scope in request.scopes:
            keys += (self._window_prefix + scope.name, self._tokens_prefix + scope.name)
            args += (scope.requests, scope.tokens, scope.window_ms)
        shares = fallback_windows[1:]
        keys += (self._tokens_prefix + name for name in shares)
        args[12] = len(shares)
        reply = await self._admit(keys=keys, args=args)
        decision = self._decision(
            now, request, limits, lease, reply, fallback_windows=fallback_windows
        )
        return int(reply[0]), decision

    def _close_visitor(self, ids: tuple[str, ...], until: float, limits: Limits) -> None:
        """Remember a spent visitor window. At most MAX_REMEMBERED_VISITORS are kept: past
        that the longest remembered is forgotten (Redis decides for that visitor again), so
        memory and the cost per refusal stay bounded whatever the number of visitors."""
        closed = self._visitors_closed
        closed.pop(ids, None)  # re-inserted at the end: the order is the order remembered
        while len(closed) >= MAX_REMEMBERED_VISITORS:
            del closed[next(iter(closed))]
        closed[ids] = (until, limits.visitor_limit)

    def _decision(
        self,
        now: float,
        request: _Request,
        limits: Limits,
        lease: str,
        reply: list[int],
        *,
        fallback_windows: tuple[str, ...] = (),
    ) -> Decision:
        status, ttl_ms, remaining, binding, size, waker, reserved, chosen, moved, *ends = reply
        reset = max(int(ttl_ms), 0) / 1000
        if (unscoped := _unscoped_refusal(status, reset, limits, request.streams)) is not None:
            return unscoped
        slot = request.hosts[int(chosen) - 1] if chosen else None

        def routed(decision: Decision) -> Decision:
            return replace(
                decision,
                waker=bool(waker),
                conversation_tokens=int(size),
                host=slot.name if slot is not None else SINGLE_HOST,
                moved=bool(moved),
                reservation=_reservation(reserved, windows, ends),
            )

        scopes = request.scopes
        windows = tuple(s.name for s in scopes if s.tokens > 0)
        if slot is not None and slot.fallback:  # its day's budget is settled like a window
            windows = (*windows, *fallback_windows)
        if not scopes:  # a key without windows of its own: only the in-flight cap held it
            admitted = Decision(True, Limit.KEY, 0, 0, 0.0, lease)  # noqa: FBT003
            return routed(admitted)
        scope = scopes[int(binding) - 1] if binding else scopes[0]
        if status == TOKENS_FULL:
            refused = refusal(Limit.TOKENS, scope.tokens, reset)
            return replace(refused, reservation=Reservation(int(reserved)), whose=scope.whose)
        if status == WINDOW_FULL:
            if scope.whose is Limit.GLOBAL:
                self._global_closed_until = now + reset
                self._closed_at_limit = limits.global_limit
            return refusal(scope.whose, scope.requests, reset)
        admitted = Decision(True, scope.whose, scope.requests, int(remaining), reset, lease)  # noqa: FBT003
        return routed(admitted)

    async def remember_conversation(self, conversation: Conversation) -> None:
        """Bind a response to the visitor it answered, so only they can continue it."""
        key = self._conversation_prefix + conversation.response_id
        await self._redis.set(key, _record(conversation), ex=CONVERSATION_SECONDS)

    async def release(
        self,
        lease: str,
        conversation: Conversation | None = None,
        reservation: Reservation | None = None,
        spent: int = 0,
        host: str = SINGLE_HOST,
    ) -> None:
        """Give an in-flight place back (on `host`) at the end of a stream; when it answered,
        bind the response to its visitor; and settle its reservation: `spent`, the tokens the answer
        really used, replaces what was reserved in each window still the one reserved in.
        One round trip for all of it (app/admission/lua/finish.lua)."""
        record = _record(conversation) if conversation is not None else ""
        response_id = conversation.response_id if conversation is not None else "-"
        keys = [self.leases_key(host), self._conversation_prefix + response_id]
        args: list[int | str] = [lease, record, CONVERSATION_SECONDS, 0]
        if reservation is not None:
            args[3] = spent - reservation.tokens
            keys += (self._tokens_prefix + name for name, _ in reservation.windows)
            args += (int(end) for _, end in reservation.windows)
        await self._finish(keys=keys, args=args)

    async def renew(self, leases: Collection[str], host: str = SINGLE_HOST) -> None:
        """Keep this process's live leases on a host from expiring (one call for all of them)."""
        if leases:
            await self._renew(keys=[self.leases_key(host)], args=[self._lease_ms, *leases])

    async def wake_ended(
        self, *, woke: bool, awake_seconds: float, host: str = SINGLE_HOST
    ) -> None:
        """The waking request's first output came (`woke`): the model is up, and the replicas
        admit as usual until they see it loaded; or it failed first: another may try."""
        key = self.host_wake_key(host)
        if woke:
            await self._redis.set(key, "awake", px=int(awake_seconds * 1000))
        else:
            await self._redis.delete(key)

    async def fallback_spent(self) -> int:
        """The fallback's tokens spent today, across replicas (for its gauge, off the hot path)."""
        spent = await self._redis.get(self._tokens_prefix + self.fallback_budget(_utc_day()[0]))
        return int(spent or 0)

    def forget_refusals(self) -> None:
        """Drop the remembered full windows (Redis came back: it may have lost them)."""
        self._global_closed_until = 0.0
        self._visitors_closed = {}


@dataclass(frozen=True, slots=True)
class _Request:
    """What one admission asks of the script, besides its limits."""

    scopes: tuple[Scope, ...]
    continues: str | None
    owner: str
    wake_seconds: float | None
    tokens: int
    hosts: tuple[HostSlot, ...]
    fallback_on_full: bool = False
    key: str = ""  # the key's name, which its lease ids end with ('' for the public)
    streams: int = 0  # the key's streams at once (0: no limit)


def _unscoped_refusal(status: int, reset: float, limits: Limits, streams: int) -> Decision | None:
    """A refusal no window decided (a conversation, a wake, the in-flight cap, the key's
    streams at once, no host up, the fallback's budget), or None."""
    if status == NOT_OWNER:
        return refusal(Limit.CONVERSATION, 0, 0)
    unscoped = {
        WAKING: (Limit.WAKING, limits.inflight_cap),
        SHED: (Limit.INFLIGHT, limits.inflight_cap),
        KEY_STREAMS_FULL: (Limit.CONCURRENCY, streams),
        NO_HOST: (Limit.NO_HOST, 0),
        FALLBACK_SPENT: (Limit.FALLBACK_BUDGET, 0),
    }.get(status)
    return None if unscoped is None else refusal(*unscoped, reset)


def _reservation(reserved: int, windows: tuple[str, ...], ends: list[int]) -> Reservation | None:
    """What an admission reserved, in each token window by the instant it ends."""
    if not reserved:
        return None
    return Reservation(int(reserved), tuple(zip(windows, map(float, ends), strict=True)))


def _utc_day() -> tuple[str, int]:
    """Today's UTC date, and the milliseconds until its end (and a grace) for its budget key."""
    now = datetime.now(UTC)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), dt_time(), tzinfo=UTC)
    return now.date().isoformat(), int((tomorrow - now).total_seconds() * 1000) + BUDGET_GRACE_MS


def _record(conversation: Conversation) -> str:
    """A conversation's record as admit.lua reads it: its owner, its size in tokens, and the
    host that answered it."""
    return f"{conversation.owner} {conversation.tokens} {conversation.host}".rstrip()
