"""What routing adds to the admission round trip: `RedisAdmitter.admit` for the single host
(`hosts=()`, the old configuration) against the same admission choosing between two hosts, on a
real Redis with the scripts loaded and the pipelined wire the gateway uses. The two alternate
phase by phase; every lease is given back at once, so no cap ever binds and every admission
is admitted. Each is timed from the call to its decision, in this process: the arguments made,
the script run, the reply read.

Run alone: PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/routing_cost.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from latency import percentile
from processes import redis_server
from redis.asyncio import Redis
from setups import SAMPLES

from app.admission.decision import HostSlot, Limits
from app.admission.redis_admitter import RedisAdmitter
from app.admission.redis_wire import RedisWire

PHASES = 20
PER_PHASE = max(50, SAMPLES)  # admissions of each kind per phase
WARM_UP = 200  # of each, untimed: connections opened, caches warm
ARMS: dict[str, tuple[HostSlot, ...]] = {
    "one_host": (),
    "two_hosts": (HostSlot("mac1", 4), HostSlot("linux1", 2)),
}
LIMITS = Limits(global_limit=10**9, visitor_limit=10**9, inflight_cap=4)


async def admissions(
    admitter: RedisAdmitter, hosts: tuple[HostSlot, ...], count: int
) -> list[float]:
    """`count` admissions, each released before the next; the seconds each took."""
    took = []
    for n in range(count):
        started = time.perf_counter()
        decision = await admitter.admit(("bench-address", f"bench-{n % 100}"), LIMITS, hosts=hosts)
        took.append(time.perf_counter() - started)
        if decision.lease is None:
            raise RuntimeError(f"an admission was refused ({decision.limit}): a cap bound")
        await admitter.release(decision.lease, host=decision.host)
    return took


async def timed(redis_url: str) -> dict[str, list[float]]:
    """Both kinds of admission in alternating phases (which goes first alternates too)."""
    redis = Redis.from_url(redis_url)
    wire = RedisWire.of(redis)
    admitter = RedisAdmitter(redis, prefix="bench-routing", window_seconds=60,
                             lease_seconds=30, wire=wire)  # fmt: skip
    try:
        await admitter.load()
        for hosts in ARMS.values():
            await admissions(admitter, hosts, WARM_UP)
        times: dict[str, list[float]] = {name: [] for name in ARMS}
        for phase in range(PHASES):
            order = list(ARMS) if phase % 2 == 0 else list(reversed(ARMS))
            for name in order:
                times[name] += await admissions(admitter, ARMS[name], PER_PHASE)
    finally:
        if wire is not None:
            wire.close()
        await redis.aclose()
    return times


def measure(redis_url: str) -> dict[str, Any]:
    """p50 and mean of each kind, and what two hosts add to them."""
    times = asyncio.run(timed(redis_url))
    result: dict[str, Any] = {"admissions_each": len(times["one_host"])}
    for name, took in times.items():
        result[f"{name}_p50_us"] = percentile(took, 0.5) * 1e6
        result[f"{name}_p99_us"] = percentile(took, 0.99) * 1e6
        result[f"{name}_mean_us"] = statistics.fmean(took) * 1e6
    for figure in ("p50", "mean"):  # p99s differ by noise more than by the script
        added = result[f"two_hosts_{figure}_us"] - result[f"one_host_{figure}_us"]
        result[f"added_{figure}_us"] = added
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    rows = [
        "",
        (
            f"Routing's cost in the admission round trip: {result['admissions_each']:,} "
            "admissions of each kind by `RedisAdmitter.admit` on this run's Redis (scripts "
            f"loaded, the pipelined wire), in {PHASES} alternating phases, each lease given back "
            "at once."
        ),
        "",
        "| admission | p50 | p99 | mean |",
        "| --- | ---: | ---: | ---: |",
    ]
    labels = {"one_host": "one host (`hosts=()`)", "two_hosts": "two hosts (4 + 2 slots)",
              "added": "added by routing"}  # fmt: skip
    for name, label in labels.items():
        p99 = result.get(f"{name}_p99_us")
        rows.append(
            f"| {label} | {result[f'{name}_p50_us']:.1f} µs | "
            f"{'' if p99 is None else f'{p99:.1f} µs'} | {result[f'{name}_mean_us']:.1f} µs |"
        )
    return rows


if __name__ == "__main__":
    with redis_server() as url:
        outcome = measure(url)
    print(json.dumps(outcome, indent=2))
    print("\n".join(markdown(outcome)))
