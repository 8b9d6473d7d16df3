"""The goals the gateway is held to, each with its measured value, its reference from the same
run, and whether it was met (or by how much it was missed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    """One goal: `measured` against `limit`, lower is better unless `at_least`."""

    name: str
    limit: float
    measured: float
    unit: str
    reference: str
    at_least: bool = False

    @property
    def met(self) -> bool:
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def target(self) -> str:
        return f"{'>=' if self.at_least else '<='} {number(self.limit)} {self.unit}".rstrip()

    def verdict(self) -> str:
        if self.met:
            return "met"
        by = abs(self.measured - self.limit)
        if not self.limit:  # a count that must stay at zero: no ratio to it
            return f"**missed** by {number(by)} {self.unit}".rstrip()
        share = self.measured / self.limit if self.limit else float("inf")
        relation = f"{share:.0%} of the target" if self.at_least else f"{share:.1f}x the target"
        return f"**missed** by {number(by)} {self.unit} ({relation})".replace("  ", " ")


def number(value: float) -> str:
    """Few digits for big numbers, more for small ones."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def level(results: dict[str, Any], streams: int) -> dict[str, float]:
    return next(item for item in results["levels"] if item["streams"] == streams)


def goals(results: dict[str, Any]) -> list[Goal]:
    """Every goal of the issue, from the results of one run."""
    one, hundred = level(results, 1), level(results, 100)
    admitted, memory = results["admitted"], results["memory"]
    visitor, local, healthz = (
        results["visitor_429_redis"],
        results["global_429"],
        results["healthz"],
    )
    repeat = results["visitor_429"]
    trips = results["round_trips"]
    return [
        Goal(
            "added first-byte latency, 1 stream, p50",
            1.0,
            one["first_byte_added_p50_ms"],
            "ms",
            _paths(one, "p50"),
        ),
        Goal(
            "added first-byte latency, 1 stream, p99",
            5.0,
            one["first_byte_added_p99_ms"],
            "ms",
            _paths(one, "p99"),
        ),
        Goal(
            "first-byte p50 at 100 streams, gateway / sim direct",
            1.5,
            hundred["first_byte_ratio_p50"],
            "x",
            _paths(hundred, "p50"),
        ),
        Goal(
            "gateway CPU per relayed chat",
            1.0,
            admitted["gateway"]["cpu_ms_per_request"],
            "ms",
            f"sim: {admitted['direct']['cpu_ms_per_request']:.2f} ms per chat it serves",
        ),
        Goal(
            "429 path on one core (visitor limit, new thumbmark each time: via Redis)",
            3000,
            visitor["rps"],
            "req/s",
            f"GET /healthz on the same gateway: {healthz['rps']:,.0f} req/s",
            at_least=True,
        ),
        Goal(
            "429 path on one core (visitor limit, one visitor: local deny cache)",
            3000,
            repeat["rps"],
            "req/s",
            f"GET /healthz: {healthz['rps']:,.0f} req/s",
            at_least=True,
        ),
        Goal(
            "429 path on one core (global limit, local deny cache)",
            3000,
            local["rps"],
            "req/s",
            f"GET /healthz: {healthz['rps']:,.0f} req/s",
            at_least=True,
        ),
        Goal(
            "memory per active stream",
            64,
            memory["gateway"]["per_stream_kib"],
            "KiB",
            f"sim holding the same streams: {memory['sim']['per_stream_kib']:.1f} KiB each",
        ),
        *_waking(results["waking"]),
        Goal(
            "Redis round trips per admission",
            1,
            trips["evalsha"] / max(1, trips["requests"]),
            "",
            f"{trips['evalsha']} EVALSHA for {trips['requests']} requests",
        ),
        *(host_goals(results["hosts"]) if "hosts" in results else []),
        *(pass_goals(results["passes"]) if "passes" in results else []),
        *(probe_power_goals(results["probe_power"]) if "probe_power" in results else []),
        *(tool_round_goals(results["posts_tool_round"]) if "posts_tool_round" in results else []),
        *(energy_cost_goals(results["energy_cost"]) if "energy_cost" in results else []),
    ]


def energy_cost_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 20's: attribution adds nothing measurable to the chat's path."""
    from energy_cost import energy_goals  # noqa: PLC0415 - imports Goal

    return energy_goals(result)


def probe_power_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 20's: the probe's power sampling at most 1% of one core at a 1 s interval."""
    from probe_power import probe_power_goals as goals_of  # noqa: PLC0415 - imports Goal

    return goals_of(result)


def tool_round_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 19's: a search_posts tool round adds at most 5 ms to an answer, beyond the
    model's own time, on the test blog's index and on 10,000 passages."""
    from posts_tool_round import posts_tool_round_goals  # noqa: PLC0415 - imports Goal

    return posts_tool_round_goals(result)


def pass_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 16's: a solution and a pass each verified in at most 50 µs on one core, the
    widget's solve at base difficulty at most 300 ms (median) in headless Chromium, the
    attacker's cost per chat doubling per step, and a visitor's first chat under 1 s."""
    from pass_attack import pass_attack_goals  # noqa: PLC0415 - they import Goal from here
    from pass_cost import pass_cost_goals  # noqa: PLC0415
    from pass_solve import pass_solve_goals  # noqa: PLC0415

    attack = (
        pass_attack_goals(result["attack"], result["solve"]["first_chat_s_median"])
        if "attack" in result
        else []
    )
    return [*pass_cost_goals(result["cost"]), *pass_solve_goals(result["solve"]), *attack]


def host_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 15's: two hosts of 4 and 2 slots at three times their capacity keep them busy at
    near-unloaded TTFT and never past their slots; a host killed fails only its own streams and
    its conversations go elsewhere at once; routing costs the admission next to nothing."""
    run, robin, kill = result["pressure"], result["round_robin"], result["kill"]
    cost = result["routing_cost"]
    over = sum(sim["rejected"] for sim in run["sims"].values())
    robin_over = sum(sim["rejected"] for sim in robin["sims"].values())
    out = kill["readyz_out_after_s"]
    return [
        Goal(
            "two hosts (4 + 2 slots) at 3x capacity: answered chats / C1 + C2",
            90,
            100 * run["goodput_share"],
            "%",
            f"slots kept busy: {run['slots_busy_share']:.0%}; round robin: "
            f"{robin['goodput_share']:.0%} ({robin['slots_busy_share']:.0%} busy)",
            at_least=True,
        ),
        Goal(
            "two hosts at 3x capacity: admitted TTFT p95 / unloaded",
            1.5,
            run["ttft_p95_s"] / run["unloaded_ttft_s"],
            "x",
            f"unloaded {run['unloaded_ttft_s'] * 1000:.0f} ms; round robin: "
            f"{robin['ttft_p95_s'] / robin['unloaded_ttft_s']:.2f}x",
        ),
        Goal(
            "two hosts at 3x capacity: streams beyond a host's slots (the sims' 503s)",
            0,
            over,
            "",
            f"round robin: {robin_over}; most at once (sampled): "
            + ", ".join(f"{name} {count}" for name, count in run["most"].items()),
        ),
        Goal(
            "a host killed under load: until new conversations all go to the survivor",
            2,
            kill["survivor_alone_after_s"],
            "s",
            "both replicas' /readyz listed it out after "
            + ("(never)" if out is None else f"{out:.2f} s"),
        ),
        Goal(
            "a host killed under load: answers failed beyond the streams it held",
            0,
            kill["failed_beyond_killed"],
            "",
            f"{kill['failed']} failed ({kill['failed_share']:.1%} of admitted); it held "
            f"{kill['streams_on_killed_host']} streams",
        ),
        Goal(
            "routing's cost in the admission round trip (two hosts against one), p50",
            100,
            cost["added_p50_us"],
            "µs",
            f"one host {cost['one_host_p50_us']:.0f} µs, two {cost['two_hosts_p50_us']:.0f} µs; "
            f"mean added {cost['added_mean_us']:.1f} µs",
        ),
    ]


def _waking(wake: dict[str, Any]) -> list[Goal]:
    load = wake["load_seconds"]
    return [
        Goal(
            "waking a model: first chat to its first token",
            load + 1,
            wake["waker_first_token_s"],
            "s",
            f"the sim's load alone: {load:.0f} s; model loads started: {wake['loads_started']}",
        ),
        Goal(
            f"waking a model: the {wake['waiters']} who waited, after the waker's first token",
            1,
            wake["waiters_after_waker_max_s"],
            "s",
            f"p50 {wake['waiters_after_waker_p50_s']:.2f} s, two gateway replicas",
        ),
    ]


def _paths(summary: dict[str, float], name: str) -> str:
    direct = summary[f"first_byte_direct_{name}_ms"]
    gateway = summary[f"first_byte_gateway_{name}_ms"]
    return f"sim direct {direct:.2f} ms, through llmgw {gateway:.2f} ms"


def table(items: list[Goal]) -> list[str]:
    """The summary table, in Markdown."""
    rows = [
        "| goal | target | measured | reference (same run) | verdict |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    rows += [
        f"| {goal.name} | {goal.target()} | {f'{number(goal.measured)} {goal.unit}'.rstrip()} | "
        f"{goal.reference} | {goal.verdict()} |"
        for goal in items
    ]
    return rows


def other_figures(results: dict[str, Any]) -> list[str]:
    """Figures without a goal, beside their references, for the summary."""
    admitted, memory = results["admitted"], results["memory"]
    rows = [
        "| figure | measured | reference (same run) |",
        "| --- | ---: | --- |",
        (
            f"| admitted chats per second, gateway on one core | {admitted['gateway']['rps']:,.0f} "
            f"(core {admitted['gateway']['busy_share']:.0%} busy) | sim direct: "
            f"{admitted['direct']['rps']:,.0f} |"
        ),
        (
            f"| resident memory at rest | {memory['gateway']['rest_kib'] / 1024:.1f} MiB | sim: "
            f"{memory['sim']['rest_kib'] / 1024:.1f} MiB |"
        ),
    ]
    rows += [
        f"| added inter-event gap p50 / p99, {item['streams']:.0f} stream(s) | "
        f"{item['gaps_added_p50_ms']:.2f} / {item['gaps_added_p99_ms']:.2f} ms | sim direct "
        f"{item['gaps_direct_p50_ms']:.2f} / {item['gaps_direct_p99_ms']:.2f} ms |"
        for item in results["levels"]
    ]
    if soak := results.get("soak"):
        rss, sockets = soak["rss_kib"], soak["connections"]
        rows += [
            (
                f"| soak RSS first / last / max | {rss['first'] / 1024:.1f} / "
                f"{rss['last'] / 1024:.1f} / {rss['max'] / 1024:.1f} MiB | "
                f"{soak['chats']} chats in {soak['seconds']:.0f} s |"
            ),
            (
                f"| soak open TCP sockets first / last / max | {sockets['first']} / "
                f"{sockets['last']} / {sockets['max']} | |"
            ),
        ]
    return rows
