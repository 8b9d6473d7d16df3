"""Resident memory at rest and per active stream: N streams held open against a slow sim."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from stream_client import StreamConnection, first_event
from usage import KIB, settled_rss

if TYPE_CHECKING:
    from latency import Target
    from processes import Server

STREAMS = int(os.environ.get("LLMGW_BENCH_STREAMS", "200"))
# Slots for every held stream and a decode rate so slow that the streams stay open.
SLOW_SIM = ("--slots", "512", "--queue", "512", "--decode-rate", "1", "--output-tokens", "1000")


async def opened(target: Target, count: int) -> tuple[list[StreamConnection], list[int]]:
    """`count` streams that have each received their first bytes, and their statuses."""
    connections = [StreamConnection(target.url) for _ in range(count)]
    statuses = await asyncio.gather(
        *(first_event(connection, target.path, target.body) for connection in connections)
    )
    return connections, list(statuses)


async def close_all(connections: list[StreamConnection]) -> None:
    await asyncio.gather(*(connection.close() for connection in connections))


async def warm(target: Target, times: int = 5) -> None:
    """Open and leave a few streams, so lazy imports and first-use caches are in place."""
    for _ in range(times):
        connections, _ = await opened(target, 1)
        await close_all(connections)


def held_streams(server: Server, target: Target, count: int = STREAMS) -> dict[str, float]:
    """RSS of `server` at rest, with `count` streams through it held open, and after."""

    async def run() -> dict[str, float]:
        await warm(target)
        await asyncio.sleep(1)
        rest = settled_rss(server.pid)
        connections, statuses = await opened(target, count)
        await asyncio.sleep(1)
        held = settled_rss(server.pid)
        await close_all(connections)
        await asyncio.sleep(2)  # the server cancels the streams and frees what they held
        after = settled_rss(server.pid)
        return {
            "streams": count,
            "open_ok": statuses.count(200),
            "rest_kib": rest / KIB,
            "held_kib": held / KIB,
            "after_kib": after / KIB,
            "per_stream_kib": (held - rest) / count / KIB,
        }

    return asyncio.run(run())
