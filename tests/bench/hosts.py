"""Two model hosts of unequal capacity (issue 15): sims of 4 and 2 slots behind two gateway
replicas on one Redis, offered three times their combined capacity C1 + C2 as Poisson arrivals
spread over both replicas; refused visitors do not retry. C1 + C2 is measured direct in the same
run, both sims at once, before and after the routings (this machine's speed drifts: their mean
is the reference). Each sim has no line of its own (--queue 0): a stream beyond its slots gets
its 503 and counts in its `rejected`, so that counter is every time a host was given more than
its cap.

- Routing: pressure-aware (the default: the most free places times weight and pressure) beside
  round robin (LLMGW_ROUTING=round_robin), each on its own pair of gateways: answered chats per
  second against C1 + C2 (and the sims' slots kept busy), admitted TTFT p95 against the
  unloaded TTFT (one chat at a time on the same pair, just before its load).
- A host killed under the same load (pressure routing): the 4-slot sim is killed KILL_AT s in
  and restarted RESTART_AT s in. How long new conversations still went to it (the gateway's
  5xx to the last one sent there), when both gateways' /readyz listed it out, how many answers
  failed against the streams it held, and how long after its restart it got a stream again.
- What routing adds to the admission round trip: routing_cost.py.

Run alone: PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/hosts.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import lanes
import routing_cost
from goals import host_goals, table
from lanes import ANSWER, TEXT, capacity
from latency import percentile
from processes import LOAD_CPU, gateway, redis_server
from sim_process import running_sims

from app.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Mapping

    from sim_process import SimHandle

ENABLED = os.environ.get("LLMGW_BENCH_HOSTS", "1") == "1"
SLOTS = {"mac1": 4, "linux1": 2}
VICTIM = "mac1"  # the host killed
LOAD = 3  # times C1 + C2
SECONDS = 30.0
KILL_AT, RESTART_AT, KILL_RUN = 10.0, 25.0, 45.0
POLL = 0.25  # seconds between looks at the gateways' /readyz and the sims' streams
UNLOADED_CHATS = 20
QUEUE_SHARE = 0.25  # the wait in line, of the unloaded TTFT (the README's advice)
SHED = "shed"  # every host full: the visitor is told to come back, nothing failed
Timeline = list[tuple[float, int, bool]]  # when, which replica, whether it said the victim serves
# The lanes benchmark's gateway (its answers, instructions, open windows) without its one
# host's cap and its key: each host has its own cap here, and only visitors come.
GATEWAY = {
    **{k: v for k, v in lanes.GATEWAY.items() if k not in {"max_inflight", "key_secret"}},
    "owner_reserved_inflight": 0,  # visitors only: no owner to hold a place for
    # The active check as deployed: with several hosts it is one of the ways a dead one is seen.
    "health_interval": Settings.model_fields["health_interval"].default,
}


def sim_args(slots: int) -> tuple[str, ...]:
    """A sim as the other load benchmarks have it, with no line: `slots` streams or a 503."""
    return ("--slots", str(slots), "--queue", "0", "--decode-rate", "200",
            "--output-tokens", str(ANSWER))  # fmt: skip


@dataclass
class Chat:
    """One visitor's chat as the client saw it, in seconds from the start of its run."""

    sent: float
    replied: float = 0.0  # when the gateway's answer began (its status)
    status: int = 0
    code: str = ""  # the gateway's error code, when it answered with one
    ttft: float | None = None
    done: float | None = None  # when its answer completed

    @property
    def failed(self) -> bool:
        """Neither answered nor shed: a 5xx other than a full house, or a stream cut short."""
        if self.status == 200:
            return self.done is None
        return self.code != SHED

    @property
    def failure(self) -> str:
        """How it failed, in words: cut mid-stream, or the gateway's status and code."""
        return "cut mid-stream" if self.status == 200 else f"{self.status} {self.code}"


async def chat(client: httpx.AsyncClient, url: str, n: int, start: float) -> Chat:
    """One new conversation through the gateway at `url`."""
    record = Chat(time.perf_counter() - start)
    headers = {"X-Thumbmark-Id": f"hosts-{n}"}
    try:
        async with client.stream("POST", f"{url}/api/chat", json={"input": "hi"},
                                 headers=headers) as r:  # fmt: skip
            record.replied, record.status = time.perf_counter() - start, r.status_code
            if r.status_code != 200:
                record.code = str(json.loads(await r.aread()).get("code", r.status_code))
                return record
            async for line in r.aiter_lines():
                if record.ttft is None and any(marker in line for marker in TEXT):
                    record.ttft = time.perf_counter() - start - record.sent
                if line.startswith("data: ") and "response.completed" in line:
                    record.done = time.perf_counter() - start
    except (httpx.HTTPError, ValueError) as exc:
        record.code = type(exc).__name__
    return record


async def offered(
    urls: tuple[str, ...],
    rate: float,
    seconds: float,
    beside: Callable[[float], Coroutine[Any, Any, None]],
) -> list[Chat]:
    """Poisson arrivals at `rate` per second for `seconds`, each to the next gateway in turn,
    whatever the answers; `beside(start)` runs alongside (it watches, or kills a host)."""
    chats: list[Chat] = []
    rng = random.Random(7)

    async def one(client: httpx.AsyncClient, n: int, start: float) -> None:
        chats.append(await chat(client, urls[n % len(urls)], n, start))

    limits = httpx.Limits(max_connections=1000)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits) as client,
        asyncio.TaskGroup() as group,
    ):
        start = time.perf_counter()
        group.create_task(beside(start))
        n = 0
        while time.perf_counter() - start < seconds:
            n += 1
            group.create_task(one(client, n, start))
            await asyncio.sleep(rng.expovariate(rate))
    return sorted(chats, key=lambda c: c.sent)


@dataclass
class SimWatch:
    """What the sims' own gauges said, looked at every POLL / 2 s: the most streams each ran at
    once, and its busy slots summed over the looks (their mean is the share kept busy)."""

    most: dict[str, int] = field(default_factory=dict)
    busy: Counter[str] = field(default_factory=Counter)
    looks: int = 0

    def busy_share(self) -> float:
        return sum(self.busy.values()) / max(1, self.looks) / sum(SLOTS.values())


async def watch_sims(sims: Mapping[str, SimHandle], until: float, seen: SimWatch) -> None:
    """Look at each sim's streams until `until` (perf_counter)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while time.perf_counter() < until:
            for name, sim in sims.items():
                with contextlib.suppress(httpx.HTTPError):  # a sim killed does not answer
                    stats = (await client.get(f"{sim.url}/_sim/stats")).json()
                    seen.most[name] = max(seen.most.get(name, 0), int(stats["active"]))
                    seen.busy[name] += int(stats["busy_slots"])
            seen.looks += 1
            await asyncio.sleep(POLL / 2)


def counters(sims: Mapping[str, SimHandle]) -> dict[str, dict[str, int]]:
    """What each sim counted since its last reset: streams started and refused (its 503s)."""
    return {
        name: {field: int(sim.stats()[field]) for field in ("started", "completed", "rejected")}
        for name, sim in sims.items()
    }


def summary(chats: list[Chat], seconds: float) -> dict[str, Any]:
    """Answered chats per second within the run's time, and TTFTs."""
    answered = [c for c in chats if c.done is not None and c.done <= seconds]
    ttft = [c.ttft for c in chats if c.status == 200 and c.ttft is not None]
    return {
        "requests": len(chats),
        "answered": sum(c.done is not None for c in chats),
        "answered_per_s": len(answered) / seconds,
        "shed": sum(c.code == SHED for c in chats),
        "failed": sum(c.failed for c in chats),
        "failure_codes": dict(Counter(c.failure for c in chats if c.failed)),
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p95_s": percentile(ttft, 0.95),
    }


@contextlib.contextmanager
def replicas(settings: dict[str, object]) -> Iterator[tuple[str, str]]:
    """Two gateways with these settings on one Redis: one deployment's replicas."""
    with gateway(**settings) as one, gateway(**settings) as two:
        yield one, two


def host_settings(redis_url: str, sims: Mapping[str, SimHandle]) -> dict[str, object]:
    """The gateway's settings for these sims, each host's cap its slots."""
    settings: dict[str, object] = {"redis_url": redis_url, "upstreams": ",".join(sims), **GATEWAY}
    for name, sim in sims.items():
        settings |= {f"upstream_{name}_url": sim.url, f"upstream_{name}_max_inflight": SLOTS[name]}
    return settings


async def unloaded_ttft(urls: tuple[str, ...]) -> float:
    """The median TTFT of chats one at a time, alternating replicas (after one each to open
    connections)."""
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        for n, url in enumerate(urls):
            await chat(client, url, -1 - n, start)
        chats = [await chat(client, urls[n % 2], n, start) for n in range(UNLOADED_CHATS)]
    return percentile([c.ttft for c in chats if c.ttft is not None], 0.5)


def loaded(
    settings: dict[str, object], sims: Mapping[str, SimHandle], rate: float
) -> dict[str, Any]:
    """One pair of gateways: its unloaded TTFT, then the load, with what the sims counted."""
    seen = SimWatch()

    async def watch(start: float) -> None:
        await watch_sims(sims, start + SECONDS, seen)

    with replicas(settings) as urls:
        unloaded = asyncio.run(unloaded_ttft(urls))
        for sim in sims.values():
            sim.reset()
        chats = asyncio.run(offered(urls, rate, SECONDS, watch))
    return {
        **summary(chats, SECONDS),
        "unloaded_ttft_s": unloaded,
        "sims": counters(sims),
        "most": seen.most,
        "slots_busy_share": seen.busy_share(),
    }


@dataclass
class Outage:
    """What the kill run saw besides the chats, in seconds from its start."""

    killed: float = 0.0
    restarted: float = 0.0
    on_victim: int = 0  # streams the killed host was running when it died
    first_stream: float | None = None  # its first stream after the restart


async def serving_timeline(urls: tuple[str, ...], start: float, into: Timeline) -> None:
    """Each replica's /readyz word on the victim, every POLL s until the run ends."""
    async with httpx.AsyncClient(timeout=5) as client:
        while (now := time.perf_counter() - start) < KILL_RUN:
            for replica, url in enumerate(urls):
                with contextlib.suppress(httpx.HTTPError):
                    hosts = (await client.get(f"{url}/readyz")).json()["hosts"]
                    victim = next(host for host in hosts if host["name"] == VICTIM)
                    into.append((now, replica, bool(victim["serving"])))
            await asyncio.sleep(POLL)


async def kill_and_restart(victim: SimHandle, start: float, outage: Outage) -> None:
    """Kill the victim KILL_AT s in, restart it RESTART_AT s in, and wait for its first
    stream (its counters start at zero again)."""
    stats = f"{victim.url}/_sim/stats"
    async with httpx.AsyncClient(timeout=5) as client:
        await asyncio.sleep(start + KILL_AT - time.perf_counter())
        outage.on_victim = int((await client.get(stats)).json()["active"])
        outage.killed = time.perf_counter() - start  # SIGKILL: dead at once
        await asyncio.to_thread(victim.kill)
        await asyncio.sleep(start + RESTART_AT - time.perf_counter())
        await asyncio.to_thread(victim.restart)
        outage.restarted = time.perf_counter() - start
        while (now := time.perf_counter() - start) < KILL_RUN:
            if int((await client.get(stats)).json()["started"]) > 0:
                outage.first_stream = now
                return
            await asyncio.sleep(POLL / 2)


def every_replica(timeline: Timeline, after: float, *, serving: bool) -> float | None:
    """When each replica had said `serving` of the victim since `after` (the last of them)."""
    firsts: dict[int, float] = {}
    for when, replica, said in timeline:
        if when >= after and said is serving:
            firsts.setdefault(replica, when)
    return max(firsts.values()) if len(firsts) == 2 else None


def killed(
    settings: dict[str, object], sims: Mapping[str, SimHandle], rate: float
) -> dict[str, Any]:
    """The load with the victim killed and restarted under it."""
    outage, timeline = Outage(), Timeline()
    for sim in sims.values():
        sim.reset()
    with replicas(settings) as urls:

        async def beside(start: float) -> None:
            await asyncio.gather(
                serving_timeline(urls, start, timeline),
                kill_and_restart(sims[VICTIM], start, outage),
            )

        chats = asyncio.run(offered(urls, rate, KILL_RUN, beside))
    return outage_summary(chats, outage, timeline)


def outage_summary(chats: list[Chat], outage: Outage, timeline: Timeline) -> dict[str, Any]:
    """The failover's figures from the chats and the replicas' word."""
    failed = [c for c in chats if c.failed]
    # Refused by the dead host (the gateway's 5xx) after it died: sent there as new.
    misrouted = [c for c in failed if c.status != 200 and c.replied >= outage.killed]
    admitted = sum(c.status == 200 or c.failed for c in chats)
    out = every_replica(timeline, outage.killed, serving=False)
    back = every_replica(timeline, outage.restarted, serving=True)
    return {
        "killed_at_s": outage.killed,
        "restarted_at_s": outage.restarted,
        "streams_on_killed_host": outage.on_victim,
        "requests": len(chats),
        "answered": sum(c.done is not None for c in chats),
        "shed": sum(c.code == SHED for c in chats),
        "failed": len(failed),
        "failed_mid_stream": sum(c.status == 200 for c in failed),
        "failed_before_stream": len(failed) - sum(c.status == 200 for c in failed),
        "failure_codes": dict(Counter(c.failure for c in failed)),
        "admitted": admitted,
        "failed_share": len(failed) / max(1, admitted),
        "failed_beyond_killed": max(0, len(failed) - outage.on_victim),
        # The last new conversation that still went to the dead host (failed before its stream).
        "survivor_alone_after_s": max((c.replied - outage.killed for c in misrouted), default=0.0),
        "failures": [
            {"sent_s": c.sent, "replied_s": c.replied, "status": c.status, "code": c.code}
            for c in failed
        ],
        "readyz_out_after_s": _since(out, outage.killed),
        "first_stream_after_restart_s": _since(outage.first_stream, outage.restarted),
        "readyz_back_after_s": _since(back, outage.restarted),
    }


def _since(moment: float | None, start: float) -> float | None:
    return None if moment is None else moment - start


def sims_capacity(sims: Mapping[str, SimHandle]) -> dict[str, dict[str, float]]:
    """Each sim's capacity measured direct, both at once (they share a core, as under load)."""

    async def both() -> list[dict[str, float]]:
        return list(await asyncio.gather(*(capacity(sims[n].url, s) for n, s in SLOTS.items())))

    return dict(zip(SLOTS, asyncio.run(both()), strict=True))


def compare(redis_url: str) -> dict[str, Any]:
    """Capacity before and after both routings under load (the machine's speed drifts: their
    mean is C1 + C2), the kill, and routing's cost. The load is three times the first."""
    with running_sims(**{name: sim_args(slots) for name, slots in SLOTS.items()}) as sims:
        before = sims_capacity(sims)
        rate = LOAD * sum(item["chats_per_s"] for item in before.values())
        settings = host_settings(redis_url, sims)
        with replicas(settings) as urls:
            first = asyncio.run(unloaded_ttft(urls))
        settings["queue_wait_seconds"] = round(QUEUE_SHARE * first, 3)
        arms = {
            routing: loaded({**settings, "routing": routing}, sims, rate)
            for routing in ("pressure", "round_robin")
        }
        after = sims_capacity(sims)
        kill = killed(settings, sims, rate)
    total = sum(before[n]["chats_per_s"] + after[n]["chats_per_s"] for n in SLOTS) / 2
    for run in arms.values():
        run["goodput_share"] = run["answered_per_s"] / total
    return {
        "capacity_before": before,
        "capacity_after": after,
        "capacity_chats_per_s": total,
        "offered_chats_per_s": rate,
        "queue_wait_seconds": settings["queue_wait_seconds"],
        **arms,
        "kill": kill,
        "routing_cost": routing_cost.measure(redis_url),
    }


LABELS = {"pressure": "pressure-aware (default)", "round_robin": "round robin"}


def markdown(result: dict[str, Any]) -> list[str]:
    """The routings side by side, the kill, routing's cost, and their goals."""
    before, after = result["capacity_before"], result["capacity_after"]
    names = ", ".join(f"{name} {SLOTS[name]} slots {before[name]['chats_per_s']:.2f} / "
                      f"{after[name]['chats_per_s']:.2f}" for name in SLOTS)  # fmt: skip
    rows = [
        "",
        "## Two model hosts behind two gateways at three times their capacity",
        "",
        (
            f"Two sims ({ANSWER}-token answers, some 300 tokens of instructions) behind two "
            "gateway replicas on one Redis. Their capacity, measured direct with both at once "
            f"before and after the two routings ({names} chats/s), has the mean C1 + C2 = "
            f"{result['capacity_chats_per_s']:.2f} chats/s. Offered "
            f"{result['offered_chats_per_s']:.1f} chats/s ({LOAD} x the first) as Poisson "
            f"arrivals spread over both replicas for {SECONDS:.0f} s; refused visitors do not "
            "retry. In-flight cap of each host: its slots; a wait in line of "
            f"{result['queue_wait_seconds'] * 1000:.0f} ms ({QUEUE_SHARE} of the unloaded TTFT). "
            f"Unloaded: the median TTFT of {UNLOADED_CHATS} chats one at a time on the same "
            "pair just before its load. Answered: chats completed within the run, per second; "
            f"slots busy: the sims' own busy slots, looked at every {POLL / 2:.3g} s, of the "
            f"{sum(SLOTS.values())}. The sims have no line: a stream beyond a host's slots gets "
            "the sim's 503 (*beyond the slots*)."
        ),
        "",
        (
            "| routing | answered | of C1 + C2 | slots busy | TTFT unloaded | TTFT p50 / p95 | "
            "p95 / unloaded | shed | failed | streams started "
            + " / ".join(SLOTS)
            + " | most at once | beyond the slots |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        run, sims = result[name], result[name]["sims"]
        rows.append(
            f"| {label} | {run['answered_per_s']:.2f}/s | {run['goodput_share']:.0%} | "
            f"{run['slots_busy_share']:.0%} | {run['unloaded_ttft_s'] * 1000:.0f} ms | "
            f"{run['ttft_p50_s'] * 1000:.0f} / {run['ttft_p95_s'] * 1000:.0f} ms | "
            f"{run['ttft_p95_s'] / run['unloaded_ttft_s']:.2f}x | {run['shed']} of "
            f"{run['requests']} | {run['failed']} | "
            f"{' / '.join(str(sims[n]['started']) for n in SLOTS)} | "
            f"{' / '.join(str(run['most'].get(n, 0)) for n in SLOTS)} | "
            f"{' / '.join(str(sims[n]['rejected']) for n in SLOTS)} |"
        )
    return [*rows, *kill_section(result["kill"]), *routing_cost.markdown(result["routing_cost"]),
            "", *table(host_goals(result))]  # fmt: skip


def _seconds(value: float | None) -> str:
    return f"not within the run ({KILL_RUN:.0f} s)" if value is None else f"{value:.2f} s"


def kill_section(kill: dict[str, Any]) -> list[str]:
    codes = ", ".join(f"{count} x {how}" for how, count in kill["failure_codes"].items())
    return [
        "",
        (
            f"A host killed under that load (pressure routing, a pair of gateways of its own): "
            f"{VICTIM} killed {kill['killed_at_s']:.1f} s in and restarted "
            f"{kill['restarted_at_s']:.1f} s in, of a {KILL_RUN:.0f} s run. Each replica's "
            f"/readyz looked at every {POLL} s."
        ),
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| streams on {VICTIM} when it was killed | {kill['streams_on_killed_host']} |",
        (
            "| until new conversations all went to the survivor (the 5xx of the last one sent "
            f"to the dead host) | {kill['survivor_alone_after_s']:.2f} s |"
        ),
        (
            f"| until both replicas' /readyz listed it not serving | "
            f"{_seconds(kill['readyz_out_after_s'])} |"
        ),
        (
            f"| answers failed, of those admitted | {kill['failed']} of {kill['admitted']} "
            f"({kill['failed_share']:.1%}){': ' + codes if codes else ''} |"
        ),
        (
            f"| answered / shed / chats sent | {kill['answered']} / {kill['shed']} / "
            f"{kill['requests']} |"
        ),
        (
            f"| after its restart, until its first stream | "
            f"{_seconds(kill['first_stream_after_restart_s'])} |"
        ),
        (
            f"| after its restart, until both replicas' /readyz listed it serving | "
            f"{_seconds(kill['readyz_back_after_s'])} |"
        ),
    ]


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})  # as run.py: this client and its sims beside the load
    with redis_server() as url:
        outcome = compare(url)
    print(json.dumps(outcome, indent=2))
    print("\n".join(markdown(outcome)))
