"""Reads the probe agents' snapshots in the background: a subscription for news as it happens
and a periodic read for what the subscription missed. Nothing here is on the request path."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis.asyncio import Redis

    from app.protection.energy import EnergyLedger
    from app.telemetry import GatewayMetrics

log = logging.getLogger("llmgw.probe")
RETRY_SECONDS = 2.0
# Numeric fields of a snapshot that describe it rather than the host's load.
NOT_SIGNALS = frozenset({"ts", "interval"})


# Signals where 0 is the bad reading: across hosts the lowest is the one that counts.
WORST_IS_LOWEST = frozenset(
    {"model_server_up", "model_loaded", "model_available", "model_token_ok"}
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One host's latest numbers, and when this gateway last saw them (monotonic)."""

    host: str
    signals: dict[str, float]
    seen: float


def parse_signals(fields: Mapping[str | bytes, object]) -> dict[str, float]:
    """The numeric fields of a snapshot; text fields (host, sources) are not signals."""
    signals: dict[str, float] = {}
    for key, value in fields.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name in NOT_SIGNALS:
            continue
        text = value.decode() if isinstance(value, bytes) else value
        try:
            signals[name] = float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return signals


def _timestamp(fields: Mapping[str | bytes, object]) -> float:
    raw = fields.get("ts", fields.get(b"ts"))
    try:
        return float(raw.decode() if isinstance(raw, bytes) else raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return time.time()


class ProbeWatcher:
    """Keeps the latest snapshot per host; a host not seen for `stale_after` is stale."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        stale_after: float,
        poll_every: float,
        metrics: GatewayMetrics,
    ) -> None:
        self._redis = redis
        self._channel = f"{{{prefix}}}:probe"
        self._pattern = f"{{{prefix}}}:probe:*"
        self._stale_after = stale_after
        self._poll_every = poll_every
        self._metrics = metrics
        self.snapshots: dict[str, Snapshot] = {}
        self._reported: set[str] = set()
        self.energy: EnergyLedger | None = None  # shares each host's energy among answers

    def fresh(self, now: float | None = None, host: str | None = None) -> list[Snapshot]:
        """Snapshots seen within the staleness limit (only `host`'s, when given)."""
        now = time.monotonic() if now is None else now
        return [
            s
            for s in self.snapshots.values()
            if now - s.seen <= self._stale_after and (host is None or s.host == host)
        ]

    def ever_seen(self, host: str | None = None) -> bool:
        """Whether any probe (or `host`'s) has reported since this gateway started."""
        return bool(self.snapshots) if host is None else host in self.snapshots

    def merged(self, now: float | None = None, host: str | None = None) -> dict[str, float] | None:
        """The worst of every fresh host's signals (the most pressured wins), or None; only
        `host`'s, when given (one model host of several, by its probe's host name)."""
        fresh = self.fresh(now, host)
        if not fresh:
            return None
        merged: dict[str, float] = {}
        for snapshot in fresh:
            for name, value in snapshot.signals.items():
                worse = min if name in WORST_IS_LOWEST else max
                merged[name] = worse(merged.get(name, value), value)
        return merged

    def record(self, host: str, fields: Mapping[str | bytes, object]) -> None:
        """Take one snapshot in (from either path)."""
        signals = parse_signals(fields)
        self.snapshots[host] = Snapshot(host, signals, time.monotonic())
        timestamp = _timestamp(fields)
        self._metrics.probe_snapshot(host, timestamp, signals)
        self._reported.add(host)
        if self.energy is not None:
            self.energy.record(host, timestamp, signals)

    def forget_stale(self, now: float) -> None:
        """Stop exporting the signals of hosts gone stale (their last-seen time stays)."""
        fresh = {snapshot.host for snapshot in self.fresh(now)}
        for host in self._reported - fresh:
            self._metrics.probe_gone(host)
        self._reported &= fresh

    async def run(self) -> None:
        """Both paths, for the life of the app."""
        await asyncio.gather(self._subscribe_forever(), self._poll_forever())

    async def poll_once(self) -> None:
        """Read every snapshot hash that exists now."""
        keys = [key async for key in self._redis.scan_iter(match=self._pattern, count=100)]
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            results = await pipe.execute()
        for key, fields in zip(keys, results, strict=True):
            if fields:
                name = key.decode() if isinstance(key, bytes) else str(key)
                self.record(name.split(":probe:", 1)[1], fields)

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except RedisError as exc:
                log.debug("probe poll failed: %s", type(exc).__name__)
            await asyncio.sleep(self._poll_every)

    async def _subscribe_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                log.debug("probe subscription lost: %s", type(exc).__name__)
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self._channel)
            async for message in pubsub.listen():
                self._take_message(message.get("data"))

    def _take_message(self, data: object) -> None:
        try:
            snapshot = json.loads(data)  # type: ignore[arg-type]
            self.record(str(snapshot["host"]), snapshot)
        except (TypeError, ValueError, KeyError):
            log.debug("ignored a malformed probe message")
