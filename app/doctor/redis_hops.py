"""The hops in Redis: the shared server, the admission script, the probe's snapshot."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from app.admission.redis_admitter import ADMIT_SCRIPT
from app.doctor.findings import (
    LMSTUDIO_TOKENS,
    Clients,
    Finding,
    HopFailed,
    elapsed_ms,
    ok,
    warn,
)
from app.doctor.redaction import reason, redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from app.settings import Settings

PROBE_TOKEN_ADVICE = (
    f"set LLMGW_PROBE_MODEL_TOKEN to {LMSTUDIO_TOKENS} in the probe's environment on the model "
    "host (/etc/llmgw/probe.env, or the plist's EnvironmentVariables on a Mac), then restart "
    "the probe (infra/probe/README.md)"
)


async def check_redis(settings: Settings, clients: Clients) -> Finding:
    """PING the shared Redis, telling a refused password from an unreachable server."""
    if clients.redis is None or settings.redis_url is None:
        return warn(
            "LLMGW_REDIS_URL is not set: the gateway runs an embedded Redis (one process only)",
            "set LLMGW_REDIS_URL to share limits between replicas and to hear from the probe",
        )
    where = redact_url(settings.redis_url.get_secret_value())
    started = time.perf_counter()
    try:
        await clients.redis.ping()
    except AuthenticationError as exc:
        raise HopFailed(
            f"{where} refused the password ({reason(exc)})",
            "check the password in LLMGW_REDIS_URL against Redis's requirepass "
            "(REDIS_PASSWORD in infra/gateway/.env)",
        ) from None
    except (RedisError, OSError) as exc:
        raise HopFailed(
            f"{where} is unreachable ({reason(exc)})",
            "is redis-server running and reachable from here? (`docker compose ps redis` in "
            "infra/gateway)",
        ) from None
    return ok(f"{where} answered PING in {elapsed_ms(started)} ms")


async def check_admit_script(_: Settings, clients: Clients) -> Finding:
    """Redis is new enough for the admission script, and has it loaded (loads it if not)."""
    if clients.redis is None:
        return ok("the embedded Redis gets it when the gateway starts")
    try:
        version = (await clients.redis.info("server")).get("redis_version", "0")
        if int(str(version).split(".")[0]) < 7:
            raise HopFailed(
                f"Redis {version} is too old: the admission script needs PEXPIRE ... NX",
                "use Redis 7.0 or newer (infra/gateway's compose pins one)",
            )
        sha = clients.redis.register_script(ADMIT_SCRIPT).sha
        if (await clients.redis.script_exists(sha))[0]:
            return ok(f"loaded (sha {sha[:12]}), Redis {version}")
        await clients.redis.script_load(ADMIT_SCRIPT)
    except ResponseError as exc:
        raise HopFailed(
            f"Redis refused a script command ({reason(exc)})",
            "the Redis user needs +script, +evalsha and +info (ACL)",
        ) from None
    return ok(f"was missing (Redis restarted or flushed): loaded it now, sha {sha[:12]}")


async def check_probe(settings: Settings, clients: Clients) -> Finding:
    """A probe agent publishes fresh snapshots to Redis (`{prefix}:probe:<host>` hashes): any
    for the single host, the one of its probe name for a host of LLMGW_UPSTREAMS."""
    if clients.redis is None:
        raise HopFailed(
            "no shared Redis: the probe has nowhere to publish",
            "set LLMGW_REDIS_URL here and for `llmgw probe` on the model host",
        )
    probe = clients.target.host.probe
    pattern = "{" + settings.key_prefix + "}:probe:" + (probe or "*")
    keys = await snapshot_keys(clients.redis, pattern, exact=probe is not None)
    if not keys:
        named = "" if probe is None else f" with LLMGW_PROBE_HOST={probe}"
        raise HopFailed(
            f"no probe snapshot in Redis ({pattern})",
            f"start `llmgw probe` on the model host{named} (infra/probe/README.md), with this "
            "LLMGW_REDIS_URL and LLMGW_KEY_PREFIX",
        )
    ages = {key: await snapshot_age(clients.redis, key) for key in keys}
    limit = settings.probe_stale_seconds
    fresh = [key for key, age in ages.items() if abs(age) <= limit]
    described = ", ".join(sorted(f"{host_of(key)} {age:.1f} s old" for key, age in ages.items()))
    if not fresh:
        raise HopFailed(
            f"stale: {described} (stale after {limit:g} s)",
            "the probe stopped publishing, or the clocks disagree: check `llmgw probe` on the "
            "model host (launchctl or systemctl, infra/probe) and NTP on both machines",
        )
    refused = [host_of(key) for key in fresh if await token_refused(clients.redis, key)]
    if refused:
        return warn(
            f"fresh: {described}; door probe → LM Studio: LM Studio refuses the probe's token on "
            f"{', '.join(sorted(refused))} (model_token_ok = 0), so it measures no model latency",
            PROBE_TOKEN_ADVICE,
        )
    return ok(f"fresh: {described}")


async def snapshot_keys(redis: aioredis.Redis, pattern: str, *, exact: bool) -> list[bytes | str]:
    """The snapshot keys that match: the one key itself when exact (a probe name is no glob)."""
    if exact:
        return [pattern] if await redis.exists(pattern) else []
    return [key async for key in redis.scan_iter(match=pattern, count=100)]


async def token_refused(redis: aioredis.Redis, key: bytes | str) -> bool:
    """Whether this snapshot says LM Studio refused the probe's token (probe/collectors)."""
    value = await redis.hget(key, "model_token_ok")
    try:
        return value is not None and float(value) == 0
    except ValueError:
        return False


def host_of(key: bytes | str) -> str:
    name = key.decode() if isinstance(key, bytes) else key
    return name.split(":probe:", 1)[1]


async def snapshot_age(redis: aioredis.Redis, key: bytes | str) -> float:
    """Seconds since the probe wrote this snapshot, by its `ts` (infinite when missing)."""
    timestamp = await redis.hget(key, "ts")
    try:
        return time.time() - float(timestamp or "inf")
    except ValueError:
        return float("inf")
