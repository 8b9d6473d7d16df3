"""`make bench`: what the gateway costs, measured side by side with its reference in one run.

Writes bench-report/report.md and prints its summary.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from adaptive import compare
from processes import gateway, redis_server, sim

from app.chat_request import ChatRequest
from app.settings import load_settings
from app.upstream import build_payload

REPORT = Path("bench-report")
SAMPLES = int(os.environ.get("LLMGW_BENCH_SAMPLES", "400"))
WRK_SECONDS = int(os.environ.get("LLMGW_BENCH_SECONDS", "8"))
SIM_ARGS = ("--slots", "64", "--decode-rate", "2000", "--output-tokens", "8", "--queue", "512")
GATEWAY = {"max_output_tokens": 8, "reasoning_effort": "none", "probe_stale_factor": 1}


def first_byte(client: httpx.Client, url: str, body: bytes) -> float:
    """Seconds from sending a chat to its first body byte; the rest is read to keep alive."""
    started = time.perf_counter()
    request = client.build_request("POST", url, content=body)
    response = client.send(request, stream=True)
    chunks = response.iter_raw()
    next(chunks)
    elapsed = time.perf_counter() - started
    for _ in chunks:
        pass
    response.close()
    return elapsed


def first_byte_side_by_side(sim_url: str, gateway_url: str) -> dict[str, list[float]]:
    """Alternate direct and gateway requests so both see the same machine state."""
    settings = load_settings(**GATEWAY)
    direct_body = build_payload(ChatRequest(input="Hello there"), settings)
    gateway_body = json.dumps({"input": "Hello there"}).encode()
    samples: dict[str, list[float]] = {"direct": [], "gateway": []}
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=30, headers=headers) as client:
        for _ in range(20):  # warm both paths: connections, caches, the admission script
            first_byte(client, f"{sim_url}/v1/responses", direct_body)
            first_byte(client, f"{gateway_url}/api/chat", gateway_body)
        for _ in range(SAMPLES):
            samples["direct"].append(first_byte(client, f"{sim_url}/v1/responses", direct_body))
            samples["gateway"].append(first_byte(client, f"{gateway_url}/api/chat", gateway_body))
    return samples


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def wrk_rps(url: str) -> dict[str, float]:
    """Requests per second that wrk gets from POST /api/chat, and how many were not 2xx."""
    script = 'wrk.method = "POST"\nwrk.body = \'{"input": "hi"}\'\n'
    script += 'wrk.headers["Content-Type"] = "application/json"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    command = ["wrk", "-t1", "-c32", f"-d{WRK_SECONDS}s", "-s", handle.name, f"{url}/api/chat"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": rps, "total": total, "non_2xx": int(refused.group(1)) if refused else 0}


def round_trips(redis_url: str, gateway_url: str, requests: int = 50) -> dict[str, float]:
    """Client commands Redis received per admission, from its own command statistics."""
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()
    with httpx.Client(timeout=30) as http:
        statuses = [
            http.post(f"{gateway_url}/api/chat", json={"input": "hi"}).status_code
            for _ in range(requests)
        ]
    calls = {
        name.removeprefix("cmdstat_"): data["calls"]
        for name, data in client.info("commandstats").items()
    }
    # Commands the scripts run inside Redis are counted too; they are no round trip.
    inside_script = {"mget", "incr", "pexpire", "pttl", "time", "zremrangebyscore", "zcard"}
    inside_script |= {"zadd", "config|resetstat"}
    return {
        "requests": requests,
        "admitted": statuses.count(200),
        "evalsha": calls.get("evalsha", 0),
        "other": {name: n for name, n in calls.items() if name not in inside_script | {"evalsha"}},
    }


def main() -> int:
    if shutil.which("wrk") is None:
        print("make bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    REPORT.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    }
    with redis_server() as redis_url, sim(*SIM_ARGS) as sim_url:
        base = {"redis_url": redis_url, "upstream_url": sim_url, **GATEWAY}
        with gateway(**base, global_limit=10**9, visitor_limit=10**9, max_inflight=10**6) as url:
            latency = first_byte_side_by_side(sim_url, url)
            results["round_trips"] = round_trips(redis_url, url)
        with gateway(**base, global_limit=10**9, visitor_limit=1) as url:
            results["visitor_429"] = wrk_rps(url)
        with gateway(**base, global_limit=1, visitor_limit=10**9) as url:
            results["global_429"] = wrk_rps(url)
    if os.environ.get("LLMGW_BENCH_ADAPTIVE", "1") == "1":
        with redis_server() as redis_url:
            results["adaptive"] = compare(redis_url)
    results["first_byte"] = summarize(latency)
    write_report(results)
    return 0


def summarize(latency: dict[str, list[float]]) -> dict[str, float]:
    direct, through = latency["direct"], latency["gateway"]
    added = [g - d for g, d in zip(through, direct, strict=True)]
    out = {}
    for name, share in (("p50", 0.5), ("p99", 0.99)):
        out[f"direct_{name}_ms"] = percentile(direct, share) * 1000
        out[f"gateway_{name}_ms"] = percentile(through, share) * 1000
        out[f"added_{name}_ms"] = out[f"gateway_{name}_ms"] - out[f"direct_{name}_ms"]
        out[f"ratio_{name}"] = out[f"gateway_{name}_ms"] / out[f"direct_{name}_ms"]
    out["added_pairwise_median_ms"] = statistics.median(added) * 1000
    out["samples"] = len(direct)
    return out


def adaptive_lines(result: dict[str, Any]) -> list[str]:
    """The static-versus-adaptive table."""
    rows = [
        "",
        "## Adaptive versus static limits at three times the sim's capacity",
        "",
        (
            f"Sim capacity {result['capacity_requests_per_s']:.2f} chats/s "
            f"({result['capacity_tokens_per_s']:.0f} tokens/s, 4 slots); offered "
            f"{result['offered_requests_per_s']:.2f} chats/s as Poisson arrivals for 30 s; "
            f"unloaded TTFT {result['unloaded_ttft_s'] * 1000:.0f} ms."
        ),
        "",
        (
            "| limits | admitted TTFT p50 | admitted TTFT p95 | p95 / unloaded | goodput | "
            "of capacity | shed or refused |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("static", "adaptive"):
        run = result[name]
        rows.append(
            f"| {name} | {run['ttft_p50_s'] * 1000:.0f} ms | {run['ttft_p95_s'] * 1000:.0f} ms | "
            f"{run['ttft_p95_s'] / result['unloaded_ttft_s']:.1f}x | "
            f"{run['goodput_tokens_per_s']:.0f} tok/s | {run['goodput_share_of_capacity']:.0%} | "
            f"{run['shed_share']:.0%} |"
        )
    rows += ["", f"Adaptive settings: `{result['adaptive_settings']}`."]
    return rows


def refused(run: dict[str, float]) -> str:
    return f"{run['non_2xx'] / run['total']:.1%}"


def write_report(results: dict[str, Any]) -> None:
    fb = results["first_byte"]
    rt = results["round_trips"]
    v429, g429 = results["visitor_429"], results["global_429"]
    lines = [
        "# llmgw benchmark",
        "",
        f"Machine: {results['machine']}. Gateway pinned to one core (taskset), load on the other.",
        "",
        "## Time to first SSE byte, one stream at a time",
        "",
        "| path | p50 (ms) | p99 (ms) |",
        "| --- | ---: | ---: |",
        f"| sim direct | {fb['direct_p50_ms']:.2f} | {fb['direct_p99_ms']:.2f} |",
        f"| through llmgw | {fb['gateway_p50_ms']:.2f} | {fb['gateway_p99_ms']:.2f} |",
        f"| added by llmgw | {fb['added_p50_ms']:.2f} | {fb['added_p99_ms']:.2f} |",
        f"| ratio | {fb['ratio_p50']:.2f}x | {fb['ratio_p99']:.2f}x |",
        "",
        f"{fb['samples']} interleaved samples per path.",
        "",
        "## 429 path, gateway on one core (wrk -t1 -c32)",
        "",
        "| refusal | requests/s | refused share |",
        "| --- | ---: | ---: |",
        f"| visitor limit (Redis script) | {v429['rps']:.0f} | {refused(v429)} |",
        f"| global limit (local deny cache) | {g429['rps']:.0f} | {refused(g429)} |",
        "",
        "## Redis round trips per admission",
        "",
        (
            f"{rt['evalsha']} EVALSHA for {rt['requests']} requests ({rt['admitted']} admitted): "
            f"{rt['evalsha'] / rt['requests']:.2f} per admission. Off the admission path: "
            f"{rt['other']} (zrem: lease release at stream end; scan/hgetall/subscribe: "
            "the background probe reader)."
        ),
    ]
    if "adaptive" in results:
        lines += adaptive_lines(results["adaptive"])
    (REPORT / "report.md").write_text("\n".join(lines) + "\n")
    (REPORT / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
