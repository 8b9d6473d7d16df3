"""The long-lived parts of a running gateway, made in the app's lifespan and closed in `finally`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.access.store import KeyStore
from app.admission.decision import Limits
from app.admission.embedded_redis import embedded_redis
from app.admission.fallback import LocalAdmitter
from app.admission.limiter import Limiter
from app.admission.redis_admitter import RedisAdmitter
from app.admission.redis_pool import LeanConnectionPool
from app.admission.redis_wire import RedisWire
from app.admission.waiting_room import WaitingRoom
from app.chat.request import InputBounds
from app.chat.transcripts import Transcripts
from app.chat.visitor import VisitorIdentifier
from app.posts.index import PostsIndex
from app.protection.breaker import BreakerConfig, CircuitBreaker
from app.protection.energy import EnergyLedger
from app.protection.governor import GovernorConfig, PressureGovernor, TtftTracker
from app.protection.monitor import UpstreamMonitor
from app.protection.probe_watch import ProbeWatcher
from app.server.pass_gate import PassGate
from app.upstream.client import Timeouts, create_client
from app.upstream.hosts import Host, Hosts
from app.upstream.model_list import ModelList

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine
    from typing import Any

    from pydantic import SecretStr

    from app.settings import Settings, UpstreamHost
    from app.telemetry import GatewayMetrics
    from app.upstream.client import UpstreamClient

log = logging.getLogger("llmgw")


@dataclass(slots=True)
class Services:
    """`upstream`, `breaker`, `monitor` and `ttft` are the first home host's (the single
    host's); chats go to the host their admission picks, in `hosts`. `governor` is the
    site's: the single host's own, or one that follows every host's (app/upstream/hosts.py)."""

    settings: Settings
    redis: aioredis.Redis
    limiter: Limiter
    identifier: VisitorIdentifier
    upstream: UpstreamClient
    bounds: InputBounds
    timeouts: Timeouts
    governor: PressureGovernor
    breaker: CircuitBreaker
    watcher: ProbeWatcher
    monitor: UpstreamMonitor
    ttft: TtftTracker
    metrics: GatewayMetrics
    waiting_room: WaitingRoom
    keys: KeyStore | None  # None: LLMGW_KEY_SECRET is not set, and no key is accepted
    models: ModelList  # the chat models keyed clients may name
    hosts: Hosts
    transcripts: Transcripts | None  # None: LLMGW_TRANSCRIPTS is off
    passes: PassGate  # visitor passes (LLMGW_PASS)
    energy: EnergyLedger  # energy per answer, from the probes' power (issue 20)
    posts: PostsIndex | None = None  # the owner's posts (app/posts); None: LLMGW_RAG is off


@asynccontextmanager
async def running_services(settings: Settings, metrics: GatewayMetrics) -> AsyncIterator[Services]:
    """Open Redis (shared or embedded) and the upstream client, start the background loops;
    stop and close all of it on the way out."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(_redis(settings))
        wire = RedisWire.of(redis)
        if wire is not None:
            stack.callback(wire.close)
        configs = (*settings.hosts(), *filter(None, [settings.fallback_host()]))
        clients = {}
        for config in configs:
            clients[config.name] = client = create_client(settings, config)
            stack.push_async_callback(client.aclose)
        services = await _assemble(settings, redis, wire, clients, metrics)
        if settings.rag != "off":
            services.posts = posts = PostsIndex.from_settings(settings, redis)
            stack.push_async_callback(posts.aclose)
            await _first_load(posts)
        metrics.posts_index(services.posts, max_age=settings.posts_index_max_age)
        tasks = [
            _background(services.watcher.run()),
            _background(services.energy.run()),
            *(_background(host.monitor.run()) for host in services.hosts.home),
            _background(services.hosts.run()),
            _background(services.passes.run()),
            _background(services.limiter.maintain(settings.lease_seconds / 3)),
        ]
        if services.hosts.fallback is not None:
            tasks.append(_background(services.hosts.fallback.monitor.run()))
        if services.posts is not None:
            tasks.append(_background(services.posts.watch()))
        stack.push_async_callback(_cancel, tasks)
        yield services


async def _assemble(
    settings: Settings,
    redis: aioredis.Redis,
    wire: RedisWire | None,
    clients: dict[str, UpstreamClient],
    metrics: GatewayMetrics,
) -> Services:
    shared = RedisAdmitter(
        redis,
        prefix=settings.key_prefix,
        window_seconds=settings.window_seconds,
        lease_seconds=settings.lease_seconds,
        wire=wire,
    )
    waiting_room = WaitingRoom(
        size=settings.queue_size,
        wait_seconds=settings.queue_wait_seconds,
        on_change=metrics.lane_queued,
    )
    metrics.lane_queued(waiting_room.waiting_by_lane())  # every lane's line, empty at start
    limiter = Limiter(
        redis,
        shared,
        LocalAdmitter(settings.window_seconds),
        fallback_share=settings.fallback_share,
        lease_max_age=settings.total_timeout + settings.lease_seconds,
        metrics=metrics,
        on_release=waiting_room.released,
    )
    try:
        await shared.load()
        hash_key = await _visitor_hash_key(redis, settings)
        pass_key = await _shared_key(redis, settings, "pass-key", settings.pass_key)
    except (RedisError, OSError) as exc:  # start anyway, on the fallback, and recover later
        log.warning(
            "Redis unavailable at start (%s): admitting from the fallback", type(exc).__name__
        )
        limiter.enter_fallback()
        hash_key = _configured_hash_key(settings) or secrets.token_bytes(32)
        pass_key = _secret_bytes(settings.pass_key) or secrets.token_bytes(32)
    else:
        metrics.redis_state(up=True, fallback_active=False)
    watcher = ProbeWatcher(
        redis,
        prefix=settings.key_prefix,
        stale_after=settings.probe_stale_seconds,
        poll_every=settings.probe_poll_seconds,
        metrics=metrics,
    )
    configs = settings.hosts()
    single = len(configs) == 1
    home = tuple(
        _host(settings, config, clients[config.name], watcher, metrics, site=single)
        for config in configs
    )
    fallback_config = settings.fallback_host()
    fallback = None
    if fallback_config is not None:
        client = clients[fallback_config.name]
        fallback = _host(settings, fallback_config, client, watcher, metrics, site=False)
    watcher.energy = _energy(settings, metrics, shared)
    first = home[0]
    site = (
        first.governor
        if single
        else PressureGovernor(
            replace(_base_limits(settings), inflight_cap=sum(c.max_inflight for c in configs)),
            _governor_config(settings),
            owner_reserved=settings.owner_reserved_inflight,
        )
    )
    if single:
        metrics.breaker_changed(first.breaker.state, first.breaker.state)
    hosts = Hosts(
        home,
        fallback,
        site=site,
        metrics=metrics,
        admitter=shared,
        fallback_on_shed=settings.fallback_on_shed,
        fallback_budget=settings.fallback_daily_tokens,
        fallback_share=int(settings.fallback_daily_tokens * settings.fallback_visitor_share),
        round_robin=settings.routing == "round_robin",
    )
    upstream, governor, breaker, monitor, ttft = (
        first.client,
        site,
        first.breaker,
        first.monitor,
        first.ttft,
    )
    return Services(
        settings=settings,
        redis=redis,
        limiter=limiter,
        identifier=VisitorIdentifier(settings.trusted_proxies, hash_key),
        upstream=upstream,
        bounds=InputBounds(settings.max_input_chars, settings.max_messages),
        timeouts=Timeouts(
            connect=settings.connect_timeout,
            first_token=settings.first_token_timeout,
            idle=settings.idle_timeout,
            total=settings.total_timeout,
        ),
        governor=governor,
        breaker=breaker,
        watcher=watcher,
        monitor=monitor,
        ttft=ttft,
        metrics=metrics,
        waiting_room=waiting_room,
        keys=_key_store(redis, settings),
        models=ModelList(upstream, first.model),
        hosts=hosts,
        transcripts=_transcripts(redis, settings),
        passes=PassGate(redis, settings, pass_key, governor, metrics),
        energy=watcher.energy,
    )


def _energy(settings: Settings, metrics: GatewayMetrics, admitter: RedisAdmitter) -> EnergyLedger:
    """The ledger of energy per answer, over every home host's probe; all replicas' streams
    on a host are its live in-flight leases."""
    configs = settings.hosts()
    fallback = settings.fallback_host()
    models = {config.model for config in configs} | ({fallback.model} if fallback else set())
    return EnergyLedger(
        metrics,
        {config.name: config.probe for config in configs},
        metrics.host_inflight,
        longest_answer=settings.total_timeout + settings.model_load_timeout,
        everyone=admitter.streams_on,
        models=models,
    )


async def _first_load(posts: PostsIndex) -> None:
    """Load the posts' index if there is one yet; a failure leaves it to the watch."""
    try:
        await posts.refresh()
    except Exception as exc:
        log.warning("the posts' index could not be loaded (%s)", type(exc).__name__)


def _transcripts(redis: aioredis.Redis, settings: Settings) -> Transcripts | None:
    if not settings.transcripts:
        return None
    return Transcripts(
        redis,
        prefix=settings.key_prefix,
        seconds=settings.transcript_seconds,
        max_tokens=settings.transcript_max_tokens,
        max_bytes=settings.transcript_max_bytes,
    )


def _host(
    settings: Settings,
    config: UpstreamHost,
    client: UpstreamClient,
    watcher: ProbeWatcher,
    metrics: GatewayMetrics,
    *,
    site: bool,
) -> Host:
    """One host and its guards: its breaker, governor (its own probe's), time to first token
    and monitor; `site` when it is the only home host, whose gauges are the site's."""
    governor = PressureGovernor(
        replace(_base_limits(settings), inflight_cap=config.max_inflight),
        _governor_config(settings),
        owner_reserved=config.reserved,
    )
    on_change = metrics.breaker_changed if site else None
    breaker = CircuitBreaker(_breaker_config(settings), on_change=on_change)
    ttft = TtftTracker()
    monitor = UpstreamMonitor(
        client,
        breaker=breaker,
        watcher=watcher,
        governor=governor,
        ttft=ttft,
        metrics=metrics,
        interval=settings.health_interval,
        model=config.model,
        probe=config.probe,
        site=site,
        name=config.name,
        lm_studio=not config.fallback,
        health_failures=settings.health_failures,
    )
    return Host(config, client, breaker, monitor, governor, ttft)


def _key_store(redis: aioredis.Redis, settings: Settings) -> KeyStore | None:
    if settings.key_secret is None:
        return None
    secret = settings.key_secret.get_secret_value().encode()
    return KeyStore(redis, prefix=settings.key_prefix, secret=secret)


def _base_limits(settings: Settings) -> Limits:
    return Limits(
        settings.global_limit,
        settings.visitor_limit,
        settings.max_inflight,
        global_tokens=settings.global_token_limit,
        visitor_tokens=settings.visitor_token_limit,
    )


def _governor_config(settings: Settings) -> GovernorConfig:
    return GovernorConfig(
        soft=settings.governor_soft,
        hard=settings.governor_hard,
        floor=settings.governor_floor,
        stale_factor=settings.probe_stale_factor,
        relax_per_second=settings.governor_relax_per_second,
        ttft_limit_seconds=settings.governor_ttft_limit_seconds,
        gpu_weight=settings.governor_gpu_weight,
    )


def _breaker_config(settings: Settings) -> BreakerConfig:
    return BreakerConfig(
        consecutive_failures=settings.breaker_failures,
        cooldown=settings.breaker_cooldown,
        max_cooldown=settings.breaker_max_cooldown,
        trials=settings.breaker_trials,
    )


def _background(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.create_task(work)
    task.add_done_callback(_report_crash)
    return task


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task stopped", exc_info=task.exception())


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    if settings.redis_url is None:
        async with embedded_redis() as client:
            yield client
        return
    client = redis_client(settings.redis_url.get_secret_value())
    try:
        yield client
    finally:
        await client.aclose()


def redis_client(url: str, max_connections: int = 32) -> aioredis.Redis:
    """A client whose pool waits for a free connection under bursts instead of failing.
    Admissions and stream ends do not use this pool: they are pipelined on one connection of
    their own (`redis_wire`, opened with this pool's settings). The rest (the readiness
    ping, the probe's snapshot, the hash key, conversations on the fallback) queue for one of
    a few connections rather than opening hundreds at once. A Redis that is down refuses the
    connection at once; one that is unreachable times out in 2 s. The pool is our own lighter
    one (`redis_pool`): redis-py's blocking pool cost a seventh of a refused request's
    CPU (issue 7)."""
    pool = LeanConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_connect_timeout=2,
        socket_timeout=3,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


def _configured_hash_key(settings: Settings) -> bytes | None:
    return _secret_bytes(settings.visitor_hash_key)


def _secret_bytes(secret: SecretStr | None) -> bytes | None:
    return None if secret is None else secret.get_secret_value().encode()


async def _visitor_hash_key(redis: aioredis.Redis, settings: Settings) -> bytes:
    """The configured key, or one shared through Redis so every replica hashes alike."""
    return await _shared_key(redis, settings, "visitor-hash-key", settings.visitor_hash_key)


async def _shared_key(
    redis: aioredis.Redis, settings: Settings, name: str, configured: SecretStr | None
) -> bytes:
    """The configured key, or one shared through Redis under `name`, so every replica uses
    the same (the visitor hash key, the pass key)."""
    if (given := _secret_bytes(configured)) is not None:
        return given
    shared = f"{{{settings.key_prefix}}}:{name}"
    await redis.set(shared, secrets.token_hex(32), nx=True)
    key = await redis.get(shared)
    if key is None:  # evicted between the two calls: this process keeps its own
        return secrets.token_bytes(32)
    return key if isinstance(key, bytes) else str(key).encode()
