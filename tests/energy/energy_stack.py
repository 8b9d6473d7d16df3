"""The sim's stack with power for the energy tests: sims with a power curve, a real probe per
sim publishing their energy (LLMGW_PROBE_POWER_SOURCE=sim), a real gateway, real Redis."""

from __future__ import annotations

import re
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import httpx
from gateway_server import GatewayHandle, running_gateway
from probe_process import running_probe
from sim_process import SimHandle, running_sims
from support import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator

IDLE_WATTS = 12.0
# 50 tokens/s, 40 tokens an answer: 0.8 s each, over a few of the probe's 0.3 s intervals.
SIM_ARGS = ("--decode-rate", "50", "--output-tokens", "40", "--idle-watts", str(IDLE_WATTS))


def scrape(gateway: GatewayHandle) -> str:
    return httpx.get(f"{gateway.url}/metrics", timeout=10).text


def total(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    found = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(key) == value for key, value in labels.items()):
            found += float(match.group(2))
    return found


@contextmanager
def powered_replicas(
    redis_url: str, watts: dict[str, float | None], replicas: int, **gateway: object
) -> Iterator[tuple[list[GatewayHandle], dict[str, SimHandle]]]:
    """One sim and one probe per name (model `<name>-model`, probe host `<name>`; a power of
    None: the probe has no power source), and `replicas` gateways over all of them on one
    Redis, round robin."""
    sims_args = {
        name: (*SIM_ARGS, "--model", f"{name}-model", "--watts-per-stream", str(per or 0))
        for name, per in watts.items()
    }
    with running_sims(**sims_args) as sims, ExitStack() as stack:
        for name, per in watts.items():
            stack.enter_context(
                running_probe(
                    redis_url,
                    sims[name].url,
                    model=f"{name}-model",
                    probe_host=name,
                    probe_power_source="none" if per is None else "sim",
                )
            )
        hosts: dict[str, object] = {}
        for name in watts:
            hosts |= {
                f"upstream_{name}_url": sims[name].url,
                f"upstream_{name}_model": f"{name}-model",
                f"upstream_{name}_probe": name,
                f"upstream_{name}_max_inflight": 8,
            }
        handles = [
            stack.enter_context(
                running_gateway(
                    redis_url=redis_url,
                    upstreams=",".join(watts),
                    routing="round_robin",
                    owner_reserved_inflight=0,
                    global_limit=1000,
                    visitor_limit=1000,
                    probe_poll_seconds=0.5,
                    **hosts,
                    **gateway,
                )
            )
            for _ in range(replicas)
        ]
        powered = [name for name, per in watts.items() if per is not None]

        def baselines() -> bool:
            texts = [scrape(handle) for handle in handles]
            return all(
                total(text, "llmgw_host_idle_power_watts", host=n) > 0
                for text in texts
                for n in powered
            )

        assert eventually(baselines, timeout=20), "no idle baseline from the probes"
        yield handles, sims


@contextmanager
def powered_stack(
    redis_url: str, watts: dict[str, float | None], **gateway: object
) -> Iterator[tuple[GatewayHandle, dict[str, SimHandle]]]:
    """`powered_replicas` with one gateway."""
    with powered_replicas(redis_url, watts, 1, **gateway) as (handles, sims):
        yield handles[0], sims
