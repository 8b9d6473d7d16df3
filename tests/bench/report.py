"""bench-report/report.md: the goals table first, then each measurement with its reference."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import adaptive
import hosts
import keyed
import lanes
import mixed
import posts_tool_round
import spy
from goals import goals, other_figures, table
from usage import KIB

if TYPE_CHECKING:
    from pathlib import Path


def write(results: dict[str, Any], folder: Path) -> str:
    """Write report.md and results.json into `folder`; return the report."""
    items = goals(results)
    lines = [
        "# llmgw benchmark",
        "",
        (
            f"Machine: {results['machine']}. The gateway is pinned to one core (taskset); the load "
            "generator, the sim and Redis share the other. Every figure is measured in this run "
            "beside its reference."
        ),
        "",
        "## Summary",
        "",
        *table(items),
        *missed(items, results.get("profile", {})),
        "",
        *other_figures(results),
        *latency_section(results["levels"]),
        *throughput_section(results),
        *memory_section(results["memory"]),
        *soak_section(results.get("soak")),
        *spy.markdown(results.get("profile", {})),
        *round_trip_section(results["round_trips"]),
    ]
    if "adaptive" in results:
        lines += adaptive.markdown(results["adaptive"])
    if "mixed" in results:
        lines += mixed.markdown(results["mixed"])
    if "keyed" in results:
        lines += keyed.markdown(results["keyed"])
    if "lanes" in results:
        lines += lanes.markdown(results["lanes"])
    if "hosts" in results:
        lines += hosts.markdown(results["hosts"])
    if "passes" in results:
        lines += _passes(results["passes"])
    if "posts_tool_round" in results:
        lines += posts_tool_round.markdown(results["posts_tool_round"])
    if "energy_cost" in results:
        lines += _energy(results["energy_cost"])
    text = "\n".join(lines) + "\n"
    (folder / "report.md").write_text(text)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    return text


def missed(items: list[Any], profile: dict[str, Any]) -> list[str]:
    """Say which goals were missed and what the profile shows about them."""
    misses = [goal for goal in items if not goal.met]
    if not misses:
        return ["", "Every goal is met."]
    lines = ["", f"{len(misses)} of {len(items)} goals missed; by how much is in the verdicts."]
    if profile.get("samples"):
        total = profile["samples"]
        parts = ", ".join(
            f"{name} {count / total:.0%}" for name, count in profile["components"][:5]
        )
        lines += [
            "",
            (
                "What the profile shows (py-spy on the gateway during the 1-stream run, its busy "
                f"samples by library): {parts}. Details under *Where the gateway's time goes*."
            ),
        ]
    else:
        lines += ["", f"No profile: {profile.get('unavailable', 'py-spy did not run')}."]
    return lines


def latency_section(levels: list[dict[str, float]]) -> list[str]:
    lines = [
        "",
        "## Latency: first SSE byte and gaps between text deltas",
        "",
        (
            "Closed loops of 1, 10 and 100 concurrent streams; direct and gateway phases "
            "alternate. Added = gateway percentile minus direct percentile. CDFs: "
            "`latency_cdf_<streams>.png`."
        ),
        "",
        (
            "| streams | figure | sim direct p50 / p99 (ms) | through llmgw p50 / p99 (ms) | "
            "added p50 / p99 (ms) | ratio p50 / p99 | samples |"
        ),
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in levels:
        for figure, label, samples in (
            ("first_byte", "first byte", item["samples_gateway"]),
            ("gaps", "inter-event gap", item["gap_samples_gateway"]),
        ):
            lines.append(
                f"| {item['streams']:.0f} | {label} | {_pair(item, figure, 'direct', 'ms')} | "
                f"{_pair(item, figure, 'gateway', 'ms')} | {_pair(item, figure, 'added', 'ms')} | "
                f"{_pair(item, figure, 'ratio', '', 'x')} | {samples:.0f} |"
            )
    lines += ["", "Gateway CPU per relayed chat in these runs: " + ", ".join(
        f"{item['cpu_ms_per_chat']:.2f} ms at {item['streams']:.0f} stream(s)" for item in levels
    ) + "."]  # fmt: skip
    lines.append(
        "The relay writes once per upstream read, so events that arrive together leave together: "
        "a gateway gap below the direct one is such a batch, and the p99 gap shows the stalls."
    )
    failed = sum(item["failed"] for item in levels)
    if failed:
        where = ", ".join(
            f"{item.get(f'failed_{path}', 0):.0f} {path} at {item['streams']:.0f} stream(s)"
            for item in levels
            for path in ("direct", "gateway")
            if item.get(f"failed_{path}", 0)
        )
        lines.append(
            f"{failed:.0f} streams did not answer 200 (or broke off) and are left out: {where}."
        )
    return lines


def _pair(item: dict[str, float], figure: str, path: str, unit: str, suffix: str = "") -> str:
    p50 = item[f"{figure}_{path}_p50{'_' + unit if unit else ''}"]
    p99 = item[f"{figure}_{path}_p99{'_' + unit if unit else ''}"]
    return f"{p50:.2f}{suffix} / {p99:.2f}{suffix}"


def throughput_section(results: dict[str, Any]) -> list[str]:
    admitted = results["admitted"]
    rows = [
        ("admitted chats through llmgw", admitted["gateway"]),
        ("sim direct (reference)", admitted["direct"]),
        (
            "429, visitor limit, a new thumbmark each time (Redis script)",
            results["visitor_429_redis"],
        ),
        ("429, visitor limit, one visitor (local deny cache)", results["visitor_429"]),
        ("429, global limit (local deny cache)", results["global_429"]),
        ("GET /healthz (reference: the framework alone)", results["healthz"]),
    ]
    lines = [
        "",
        "## Throughput on one core (wrk -t1 -c32)",
        "",
        (
            "| requests | requests/s | non-2xx | server core busy | server CPU per request | "
            "per fully busy core |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {run['rps']:,.0f} | {run['non_2xx'] / max(1, run['total']):.0%} | "
        f"{run['busy_share']:.0%} | {run['cpu_ms_per_request']:.3f} ms | "
        f"{run['rps_per_core']:,.0f}/s |"
        for name, run in rows
    ]
    lines += [
        "",
        (
            "The sim shares its core with wrk and Redis, so when the gateway's core is not fully "
            "busy the admitted rate is the sim's limit; *per fully busy core* is 1 / CPU per "
            "request."
        ),
    ]
    return lines


def memory_section(memory: dict[str, dict[str, float]]) -> list[str]:
    gateway, sim = memory["gateway"], memory["sim"]
    lines = [
        "",
        f"## Memory: {gateway['streams']:.0f} streams held open against a slow sim",
        "",
        "| process | RSS at rest | RSS with the streams | per stream | RSS after they close |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, item in (("llmgw", gateway), ("sim, streams direct (reference)", sim)):
        lines.append(
            f"| {name} | {item['rest_kib'] / 1024:.1f} MiB | {item['held_kib'] / 1024:.1f} MiB | "
            f"{item['per_stream_kib']:.1f} KiB | {item['after_kib'] / 1024:.1f} MiB |"
        )
    lines += ["", f"{gateway['open_ok']:.0f} of {gateway['streams']:.0f} streams opened with 200."]
    return lines


def soak_section(soak: dict[str, Any] | None) -> list[str]:
    if soak is None:
        return ["", "## Soak", "", "Not run (LLMGW_BENCH_SOAK=0)."]
    rss, sockets = soak["rss_kib"], soak["connections"]
    return [
        "",
        f"## Soak: {soak['seconds']:.0f} s of steady chats",
        "",
        (
            f"{soak['chats']} chats ({soak['ok']} answered 200; {soak['left_mid_stream']} visitors "
            f"left mid-stream); the gateway's core was {soak['busy_share']:.0%} busy. Plot: "
            "`soak_rss.png`. RSS rises while the gateway's bounded memories fill (the last "
            "10,000 conversations' owners, kept for follow-ups while Redis is away: full some "
            "70 s in), so the last third is the steady state."
        ),
        "",
        "| gateway | first | last | max |",
        "| --- | ---: | ---: | ---: |",
        (
            f"| RSS (MiB) | {rss['first'] / 1024:.1f} | {rss['last'] / 1024:.1f} | "
            f"{rss['max'] / 1024:.1f} |"
        ),
        f"| open TCP sockets | {sockets['first']} | {sockets['last']} | {sockets['max']} |",
        "",
        (
            "RSS trend: "
            + ", ".join(
                f"{value:+.0f} KiB per minute over the {part}"
                for part, value in soak["rss_trend_kib_per_min"].items()
            )
            + f"; {(rss['last'] - rss['first']) * KIB / max(1, soak['chats']):.0f} bytes per chat "
            "from first to last sample."
        ),
    ]


def round_trip_section(trips: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Redis round trips per admission",
        "",
        (
            f"{trips['evalsha']} EVALSHA for {trips['requests']} requests ({trips['admitted']} "
            f"admitted): {trips['evalsha'] / trips['requests']:.2f} per admission. Off the "
            f"admission path: {trips.get('stream_end_evalsha', 0)} EVALSHA at stream ends (the "
            "lease released and the conversation's owner stored in one round trip, "
            f"{trips.get('conversations_stored', 0)} owners stored), and {trips['other']} "
            "(scan/hgetall/subscribe: the background probe reader)."
        ),
    ]


def _passes(result: dict[str, Any]) -> list[str]:
    """Visitor passes: what checking costs the gateway, what solving costs the widget."""
    solve = result["solve"]
    numbers = ", ".join(map(str, solve["max_number"]))
    row = (
        f"| base difficulty | {solve['solve_ms_median']:.0f} ms | {solve['solve_ms_p90']:.0f} ms"
        f" | {solve['solve_ms_max']:.0f} ms | {solve['check_ms_median']:.0f} ms"
        f" | {solve['hashes_per_second']:,.0f} |"
    )
    return [
        "",
        "## Visitor passes",
        "",
        "What each step of a pass costs on the server (µs per call, one process), and the",
        f"widget's solve at base difficulty (maxNumber {numbers}) in headless Chromium over",
        f"{solve['solves']} new visitors.",
        "",
        "| call | µs per call |",
        "| --- | ---: |",
        *(f"| {name} | {micros:.1f} |" for name, micros in result["cost"].items()),
        "",
        "| widget solve | median | p90 | max | whole check, median | hashes/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        row,
        *_pass_attack(result),
    ]


def _pass_attack(result: dict[str, Any]) -> list[str]:
    """The attacker's cost per admitted chat at each step, the visitor's first chat beside."""
    if "attack" not in result:
        return []
    from pass_attack import table  # noqa: PLC0415 - the bench's own module

    attack, solve = result["attack"], result["solve"]
    return [
        "",
        (
            "An attacker's cost per admitted chat at each step: the ALTCHA library's solver on"
            f" one core ({attack['hashes_per_second']:,.0f} hashes/s), a challenge's mean work, a"
            " pass per network for its chats; a visitor's first chat, from Enter to the first"
            " words with the pass fetched first, median over new visitors in Chromium (max"
            f" {solve['first_chat_s_max']:.2f} s); a visitor's solve at each step at the widget's"
            f" rate at a dear price ({solve['dear_hashes_per_second']:,.0f} hashes/s)."
        ),
        "",
        *table(attack, solve["first_chat_s_median"], solve["dear_hashes_per_second"]),
    ]


def _energy(result: dict[str, float]) -> list[str]:
    """Energy per answer's CPU per chat: at the stream's end, and settling it later."""
    return [
        "",
        "## Energy per answer",
        "",
        "CPU per chat of the attribution (tests/bench/energy_cost.py: 4 answers at once, 8 s",
        "each, a snapshot a second): the call at the stream's end only keeps the answer; the",
        "counting and sharing run in the background (probe watcher, and a drain a second).",
        "",
        "| part | µs per chat |",
        "| --- | ---: |",
        f"| at the stream's end (on the loop) | {result['at_end_us']:.1f} |",
        f"| settling its share (background task) | {result['settling_us']:.1f} |",
    ]
