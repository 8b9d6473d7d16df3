"""A bounded soak: steady chats (some left mid-stream) for a few minutes, while the gateway's
resident memory and open sockets are sampled; both should stay flat."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stream_client import StreamConnection, first_event, timed_stream
from usage import KIB, CpuClock, open_connections, rss

if TYPE_CHECKING:
    from latency import Target
    from processes import Server

ENABLED = os.environ.get("LLMGW_BENCH_SOAK", "1") == "1"
SECONDS = float(os.environ.get("LLMGW_BENCH_SOAK_SECONDS", "180"))
# Chats per second, spread over the workers: some 27,000 chats in all, so the gateway's
# bounded memories (the last 10,000 conversations' owners, kept for follow-ups while Redis is
# away) are full after the first minute and the last third shows the steady state.
RATE = 150.0
WORKERS = 24
LEAVE_EVERY = 10  # every tenth visitor leaves after the first bytes: the cancellation path
SAMPLE_EVERY = 2.0
WARM_UP = 5.0  # seconds of traffic before the first sample: connections and pools are open
# Streams of some 40 ms, so a visitor who leaves does leave mid-stream.
SOAK_SIM = ("--slots", "64", "--decode-rate", "400", "--output-tokens", "16")


@dataclass
class SoakRun:
    """Samples (seconds since start, RSS bytes, TCP sockets) and what the chats got."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    left: int = 0


async def visitor(target: Target, run: SoakRun, deadline: float, offset: int) -> None:
    """One worker: a chat every WORKERS / RATE seconds; every tenth one is abandoned."""
    connection, interval, count = StreamConnection(target.url), WORKERS / RATE, offset
    while (started := time.perf_counter()) < deadline:
        count += 1
        if count % LEAVE_EVERY == 0:
            run.statuses.append(await first_event(connection, target.path, target.body))
            await connection.close()
            run.left += 1
        else:
            run.statuses.append((await timed_stream(connection, target.path, target.body)).status)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    await connection.close()


async def sampler(pid: int, run: SoakRun, deadline: float) -> None:
    """RSS and sockets every SAMPLE_EVERY seconds, once the warm-up has opened the pools."""
    await asyncio.sleep(WARM_UP)
    begun = time.perf_counter()
    while time.perf_counter() < deadline:
        run.samples.append((time.perf_counter() - begun, rss(pid), open_connections(pid)))
        await asyncio.sleep(SAMPLE_EVERY)


def soak(gateway: Server, target: Target, seconds: float = SECONDS) -> dict[str, Any]:
    """Run the soak against `gateway` (after a short warm-up); summarize memory, sockets and
    outcomes."""
    run = SoakRun()

    async def main() -> None:
        deadline = time.perf_counter() + WARM_UP + seconds
        workers = [visitor(target, run, deadline, n) for n in range(WORKERS)]
        await asyncio.gather(sampler(gateway.pid, run, deadline), *workers)

    with CpuClock(gateway.pid).measure() as spent:
        asyncio.run(main())
    return summarize(run, seconds, spent.busy_share)


def summarize(run: SoakRun, seconds: float, busy_share: float) -> dict[str, Any]:
    times = [at for at, _, _ in run.samples]
    memory = [value / KIB for _, value, _ in run.samples]
    sockets = [value for _, _, value in run.samples]
    return {
        "seconds": seconds,
        "chats": len(run.statuses),
        "ok": run.statuses.count(200),
        "left_mid_stream": run.left,
        "busy_share": busy_share,
        "rss_kib": {"first": memory[0], "last": memory[-1], "max": max(memory)},
        "connections": {"first": sockets[0], "last": sockets[-1], "max": max(sockets)},
        "rss_trend_kib_per_min": {
            "first half": _slope(times[: len(times) // 2], memory[: len(memory) // 2]),
            "last third": _slope(times[-len(times) // 3 :], memory[-len(memory) // 3 :]),
        },
        "series": {"seconds": times, "rss_kib": memory, "connections": sockets},
    }


def _slope(times: list[float], values: list[float]) -> float:
    """Least-squares trend in units per minute (0 for too few samples)."""
    if len(times) < 3:
        return 0.0
    return statistics.linear_regression(times, values).slope * 60
