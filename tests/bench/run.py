"""`make bench`: what the gateway costs, measured side by side with its reference in one run.

Writes bench-report/report.md (with PNG plots and results.json beside it) and prints it.
LLMGW_BENCH_SOAK=0 skips the soak, LLMGW_BENCH_ADAPTIVE=0 the adaptive-limits comparison,
LLMGW_BENCH_MIXED=0 the mixed prompt sizes (request against token windows), LLMGW_BENCH_KEYED=0
the keyed route's latency, LLMGW_BENCH_LANES=0 the owner's lane under a public flood,
LLMGW_BENCH_HOSTS=0 the two model hosts (routing, a host killed, routing's cost),
LLMGW_BENCH_PASSES=0 visitor passes (the server's checks, the widget's solve in Chromium).
LLMGW_BENCH_PROBE_POWER=0 the probe's power sampling; LLMGW_BENCH_POSTS=0 the posts' search;
LLMGW_BENCH_POSTS_TOOL=0 the posts' tool round (search_posts through the gateway).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import energy_cost
import hosts
import keyed
import lanes
import mixed
import pass_attack
import pass_cost
import pass_solve
import posts_scifact
import posts_search
import posts_tool_round
import probe_power
import soak
import spy
from adaptive import compare
from footprint import SLOW_SIM, held_streams
from latency import Level, Target, measure_levels, summarize
from plots import latency_cdfs, soak_memory
from processes import LOAD_CPU, gateway_server, redis_server, sim_server
from report import write
from round_trips import round_trips
from setups import GATEWAY, LATENCY_SIM, OPEN, SAMPLES
from throughput import wrk_with_cpu
from usage import CpuClock
from waking import wake_run

from app.chat.request import ChatRequest
from app.settings import load_settings
from app.upstream.client import build_payload

REPORT = Path("bench-report")
# Tokens as fast as the sim can write them: a chat costs what its HTTP exchange costs.
FAST_SIM = ("--slots", "64", "--queue", "512", "--decode-rate", "100000", "--output-tokens", "8")
LEVELS = (
    Level(streams=1, chats_per_phase=5, phases=max(2, SAMPLES // 5)),
    Level(streams=10, chats_per_phase=10, phases=max(2, SAMPLES // 100)),
    Level(streams=100, chats_per_phase=4, phases=max(2, SAMPLES * 3 // 400)),
)
PROFILE_LEVEL = Level(streams=1, chats_per_phase=5, phases=max(2, SAMPLES // 10))
GATEWAY_BODY = json.dumps({"input": "Hello there"}).encode()


def targets(sim_url: str, gateway_url: str) -> tuple[Target, Target]:
    """The same chat sent to the sim directly (as the gateway would send it) and to llmgw."""
    payload = build_payload(ChatRequest(input="Hello there"), load_settings(**GATEWAY))
    return (
        Target("direct", sim_url, "/v1/responses", payload),
        Target("gateway", gateway_url, "/api/chat", GATEWAY_BODY),
    )


def latency_runs(redis_url: str) -> dict[str, Any]:
    """First byte and gaps at each concurrency, the profile, and Redis round trips."""
    with sim_server(*LATENCY_SIM) as sim, gateway_server(
        redis_url=redis_url, upstream_url=sim.url, **GATEWAY, **OPEN
    ) as gateway:  # fmt: skip
        direct, through = targets(sim.url, gateway.url)
        levels = measure_levels(LEVELS, direct, through, CpuClock(gateway.pid))
        for result in levels:
            latency_cdfs(result, REPORT / f"latency_cdf_{result.streams}.png")
        profile = profiled(gateway.pid, direct, through)
        # Leases renewed only hourly here: a renewal is an EVALSHA too, but no admission.
        with gateway_server(
            redis_url=redis_url, upstream_url=sim.url, lease_seconds=3600, **GATEWAY, **OPEN
        ) as quiet:
            trips = round_trips(redis_url, quiet.url)
    return {"levels": [summarize(r) for r in levels], "profile": profile, "round_trips": trips}


def profiled(pid: int, direct: Target, through: Target) -> dict[str, Any]:
    """py-spy on the gateway during a repeat of the 1-stream run."""
    raw = REPORT / "py-spy.txt"
    raw.unlink(missing_ok=True)
    with spy.recording(pid, raw) as recording:
        if not recording:
            return {"unavailable": "py-spy is not installed (pip install py-spy)"}
        time.sleep(1)  # py-spy attaches
        run = measure_levels([PROFILE_LEVEL], direct, through, CpuClock(pid))[0]
    if not raw.exists():
        return {"unavailable": "py-spy wrote no samples (is ptrace allowed?)"}
    folded = spy.fold(raw)
    cpu_per_chat = run.gateway_cpu_seconds / max(1, run.gateway_chats) * 1000
    return {**folded, "rate": spy.RATE, "chats": run.gateway_chats, "cpu_ms_per_chat": cpu_per_chat}


def throughput_runs(redis_url: str) -> dict[str, Any]:
    """Admitted chats (gateway and sim direct), the three 429 paths, and /healthz, by wrk."""
    results: dict[str, Any] = {}
    with sim_server(*FAST_SIM) as sim:
        base = {"redis_url": redis_url, "upstream_url": sim.url, **GATEWAY}
        direct, _ = targets(sim.url, "")
        with gateway_server(**base, **OPEN) as gateway:
            results["admitted"] = {
                "direct": wrk_with_cpu(sim, direct.path, direct.body),
                "gateway": wrk_with_cpu(gateway, "/api/chat", GATEWAY_BODY),
            }
        with gateway_server(**base, global_limit=10**9, visitor_limit=1) as gateway:
            results["visitor_429"] = wrk_with_cpu(gateway, "/api/chat", GATEWAY_BODY)
            results["visitor_429_redis"] = wrk_with_cpu(
                gateway, "/api/chat", GATEWAY_BODY, rotate_thumbmark=True
            )
            results["healthz"] = wrk_with_cpu(gateway, "/healthz")
        with gateway_server(**base, global_limit=1, visitor_limit=10**9) as gateway:
            results["global_429"] = wrk_with_cpu(gateway, "/api/chat", GATEWAY_BODY)
    return results


def memory_runs(redis_url: str) -> dict[str, Any]:
    """Streams held open: first straight at the sim (the reference), then through llmgw."""
    with sim_server(*SLOW_SIM) as sim:
        direct, _ = targets(sim.url, "")
        reference = held_streams(sim, direct)
        with gateway_server(redis_url=redis_url, upstream_url=sim.url, **GATEWAY, **OPEN) as gw:
            _, through = targets(sim.url, gw.url)
            measured = held_streams(gw, through)
    return {"gateway": measured, "sim": reference}


def soak_run(redis_url: str) -> dict[str, Any]:
    with sim_server(*soak.SOAK_SIM) as sim, gateway_server(
        redis_url=redis_url, upstream_url=sim.url, **GATEWAY, **OPEN
    ) as gateway:  # fmt: skip
        _, through = targets(sim.url, gateway.url)
        result = soak.soak(gateway, through)
    soak_memory(result["series"], REPORT / "soak_rss.png")
    return result


def main() -> int:
    if shutil.which("wrk") is None:
        print("make bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    REPORT.mkdir(exist_ok=True)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})  # this client, and what it starts, beside the load
    load = os.getloadavg()[0]
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the start"
    }
    with redis_server() as redis_url:
        results |= latency_runs(redis_url)
        results |= throughput_runs(redis_url)
        results["memory"] = memory_runs(redis_url)
        results["waking"] = wake_run(redis_url)
        results["soak"] = soak_run(redis_url) if soak.ENABLED else None
    if os.environ.get("LLMGW_BENCH_ADAPTIVE", "1") == "1":
        with redis_server() as redis_url:
            results["adaptive"] = compare(redis_url)
    if os.environ.get("LLMGW_BENCH_MIXED", "1") == "1":
        with redis_server() as redis_url:
            results["mixed"] = mixed.compare(redis_url)
    if keyed.ENABLED:
        with redis_server() as redis_url:
            results["keyed"] = keyed.measure(redis_url)
    if lanes.ENABLED:
        with redis_server() as redis_url:
            results["lanes"] = lanes.compare(redis_url)
    if hosts.ENABLED:
        with redis_server() as redis_url:
            results["hosts"] = hosts.compare(redis_url)
    if os.environ.get("LLMGW_BENCH_PASSES", "1") == "1":
        results["passes"] = {
            "cost": pass_cost.measure(),
            "solve": pass_solve.measure(),
            "attack": pass_attack.measure(),
        }
    _probe_and_posts(results)
    print(write(results, REPORT))
    return 0


def _probe_and_posts(results: dict[str, Any]) -> None:
    """The probe's power sampling and the posts' tool round (in the report), the posts'
    search (printed)."""
    if os.environ.get("LLMGW_BENCH_PROBE_POWER", "1") == "1":
        results["probe_power"] = probe_power.measure()
    if posts_tool_round.ENABLED:
        results["posts_tool_round"] = posts_tool_round.run()
    if os.environ.get("LLMGW_BENCH_ENERGY", "1") == "1":
        results["energy_cost"] = energy_cost.measure()
    if os.environ.get("LLMGW_BENCH_POSTS", "1") == "1":
        posts_search.main()
        posts_scifact.main()  # skipped unless LLMGW_BENCH_SCIFACT names the unpacked zip


if __name__ == "__main__":
    sys.exit(main())
