"""`llmgw doctor`: walk the path from this machine to the model hop by hop, and say what to do.

    config → redis → admit-script, then for each home host:
           dns → tunnel (TCP) → tls (https only) → nginx → token → models → model
           → generation → concurrency → probe
    and for the hosted fallback, when configured: dns → tunnel → tls → token → model

A hop runs only when every hop before it passed: the first failure is the one to fix, and the
hops behind it would only repeat it. Each host is walked on its own, after the shared hops: one
host down does not keep the doctor from saying whether the others are fine. A hop left out on
request (`--no-concurrency`) is skipped and the rest still run. Secrets never reach the output:
URLs are shown with their password replaced, and the finished report is scrubbed of the tokens
and the Redis password.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.doctor.concurrency_hop import check_concurrency
from app.doctor.door_hops import check_nginx, check_token
from app.doctor.fallback_hops import check_fallback_model, check_fallback_token
from app.doctor.findings import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Check,
    Clients,
    Finding,
    HopFailed,
    HopReport,
    Result,
)
from app.doctor.generation_hop import check_generation
from app.doctor.model_hops import check_model, check_models
from app.doctor.network_hops import check_dns, check_tls, check_tunnel
from app.doctor.redaction import reason, redact_url, scrub, secrets_in
from app.doctor.redis_hops import check_admit_script, check_probe, check_redis
from app.doctor.table import render
from app.doctor.targets import Target, targets
from app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping


SHARED_CHECKS: dict[str, Check] = {"redis": check_redis, "admit-script": check_admit_script}
HOST_CHECKS: dict[str, Check] = {
    "dns": check_dns,
    "tunnel": check_tunnel,
    "tls": check_tls,
    "nginx": check_nginx,
    "token": check_token,
    "models": check_models,
    "model": check_model,
    "generation": check_generation,
    "concurrency": check_concurrency,
    "probe": check_probe,
}
# A hosted provider: no nginx, LM Studio catalog, generation or probe (app/doctor/fallback_hops).
FALLBACK_CHECKS: dict[str, Check] = {
    "dns": check_dns,
    "tunnel": check_tunnel,
    "tls": check_tls,
    "token": check_fallback_token,
    "model": check_fallback_model,
}
HOPS = (*SHARED_CHECKS, *HOST_CHECKS)  # in order, after config, with one host


def hops(target: Target) -> dict[str, Check]:
    """One host's hops, in order (TLS only for https)."""
    checks = FALLBACK_CHECKS if target.fallback else HOST_CHECKS
    https = target.url.startswith("https://")
    return {name: check for name, check in checks.items() if https or name != "tls"}


@asynccontextmanager
async def opened_clients(settings: Settings, walked: list[Target]) -> AsyncIterator[list[Clients]]:
    """Each host's clients, one Redis for all. Short timeouts, no retries: the doctor reports a
    failure, it does not hide it."""
    async with AsyncExitStack() as stack:
        redis = None
        if settings.redis_url is not None:
            redis = aioredis.Redis.from_url(
                settings.redis_url.get_secret_value(),
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=READ_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            stack.push_async_callback(redis.aclose)
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        each = []
        for target in walked:
            http = httpx.AsyncClient(base_url=target.url, timeout=timeout)
            stack.push_async_callback(http.aclose)
            each.append(Clients(target, http, redis))
        yield each


async def run_hop(check: Check, settings: Settings, clients: Clients) -> Finding:
    try:
        return await check(settings, clients)
    except HopFailed as failure:
        return Finding(Result.FAIL, failure.detail, failure.advice)
    except Exception as exc:  # an answer nobody foresaw: report it, never crash the doctor
        return Finding(Result.FAIL, f"unexpected {type(exc).__name__}: {reason(exc)}")


async def diagnose(left_out: Mapping[str, str] | None = None) -> list[HopReport]:
    """The shared hops, then each host's in order; after a failure the rest of its walk is
    skipped (every host's, after a shared hop's), and so are the hops `left_out` names (with
    the reason)."""
    left_out = left_out or {}
    try:
        settings = load_settings()
    except SettingsError as exc:
        advice = "fix the variable named here (README.md, Configuration)"
        failed = HopReport("config", Result.FAIL, str(exc), advice)
        return [failed, *(HopReport(name, Result.SKIPPED, "") for name in HOPS)]
    walked = targets(settings)
    reports = [HopReport("config", Result.OK, f"valid: {configured(walked)}")]
    async with opened_clients(settings, walked) as each:
        # The shared hops need Redis alone: the first host's clients carry it as every host's do.
        reports += await walk(settings, each[0], SHARED_CHECKS, left_out, label="")
        blocked = any(report.result is Result.FAIL for report in reports)
        for clients in each:
            checks, label = hops(clients.target), clients.target.label
            reports += await walk(settings, clients, checks, left_out, label, blocked=blocked)
    return reports


async def walk(
    settings: Settings,
    clients: Clients,
    checks: Mapping[str, Check],
    left_out: Mapping[str, str],
    label: str,
    *,
    blocked: bool = False,
) -> list[HopReport]:
    """These hops in order, labelled: after the first failure (or when `blocked`) the rest are
    skipped."""
    reports = []
    for name, check in checks.items():
        if blocked:
            reports.append(HopReport(name, Result.SKIPPED, "", host=label))
        elif name in left_out:
            reports.append(HopReport(name, Result.SKIPPED, left_out[name], host=label))
        else:
            finding = await run_hop(check, settings, clients)
            reports.append(HopReport(name, finding.result, finding.detail, finding.advice, label))
            blocked = finding.result is Result.FAIL
    return reports


def configured(walked: list[Target]) -> str:
    """Each host's model and URL (its password redacted), named unless it is the single host."""
    return "; ".join(
        f"{target.label + ': ' if target.label else ''}model {target.model}, "
        f"upstream {redact_url(target.url)}"
        for target in walked
    )


def main(argv: list[str] | None = None) -> int:
    """`llmgw doctor`: 0 when every hop passes, 1 at the first failing hop."""
    parser = argparse.ArgumentParser(
        prog="llmgw doctor",
        description="Check every hop from here to the model, in order, and say what to do.",
    )
    parser.add_argument(
        "--no-concurrency",
        action="store_true",
        help="do not measure how many answers the model host runs at once (two small ones)",
    )
    args = parser.parse_args(argv)
    left_out = {"concurrency": "not measured (--no-concurrency)"} if args.no_concurrency else {}
    reports = asyncio.run(diagnose(left_out))
    sys.stdout.write(scrub(render(reports), secrets_in(dict(os.environ))))
    return 1 if any(report.result is Result.FAIL for report in reports) else 0
