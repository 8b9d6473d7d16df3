"""`llmgw doctor`: walk the path from this machine to the model hop by hop, and say what to do.

    config → redis → admit-script → dns → tunnel (TCP) → tls (https only) → nginx → token
           → models → model-loaded → generation → probe

A hop runs only when every hop before it passed: the first failure is the one to fix, and the
hops behind it would only repeat it. Secrets never reach the output: URLs are shown with their
password replaced, and the finished report is scrubbed of the token and the Redis password.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis.asyncio as aioredis
from httpx_sse import aconnect_sse
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from app.admission import ADMIT_SCRIPT
from app.outage import OutageClass, classify_response
from app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
GENERATION_TIMEOUT = 30.0
CERT_WARN_DAYS = 14
MIN_TOKEN_CHARS = 32
HOME = "infra/home"
REFUSED_ADVICE = (
    "check LLMGW_UPSTREAM_TOKEN against infra/home/nginx/tokens.map "
    "(after editing it: `docker compose exec nginx nginx -s reload`)"
)
TUNNEL_ADVICE = (
    "the tunnel or what is behind it is down: on the model host, `docker compose ps` and "
    f"`docker compose logs tailscale` in {HOME}, `tailscale funnel status`; for a local URL, "
    "is the server running on that port?"
)
OUTAGE_ADVICE = {
    OutageClass.TUNNEL: TUNNEL_ADVICE,
    OutageClass.NGINX_DOWN: f"nginx is down on the model host: `docker compose ps nginx` and "
    f"`docker compose logs nginx` in {HOME}",
    OutageClass.MODEL_SERVER_DOWN: "nginx cannot reach the model server: is LM Studio's server "
    "started (Developer tab)? Is LLMGW_LMSTUDIO_ADDRESS right in infra/home/.env?",
    OutageClass.TOKEN_INVALID: REFUSED_ADVICE,
    OutageClass.MODEL_NOT_LOADED: "load the model in LM Studio (Developer tab) or with "
    "`lms load <model>`",
}


class Result(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but deserves a look; does not fail the run
    FAIL = "FAIL"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Finding:
    """What one hop found."""

    result: Result
    detail: str
    advice: str = ""


@dataclass(frozen=True, slots=True)
class HopReport:
    """One row of the table."""

    hop: str
    result: Result
    detail: str
    advice: str = ""


class HopFailed(Exception):
    """A hop found the problem; the detail says what, the advice what to do."""

    def __init__(self, detail: str, advice: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.advice = advice


@dataclass(frozen=True, slots=True)
class Clients:
    """The connections the hops share: one HTTP client (no token by default), Redis if set."""

    http: httpx.AsyncClient
    redis: aioredis.Redis | None


Check = Callable[[Settings, Clients], Awaitable[Finding]]


def ok(detail: str, advice: str = "") -> Finding:
    return Finding(Result.OK, detail, advice)


def warn(detail: str, advice: str) -> Finding:
    return Finding(Result.WARN, detail, advice)


# --- secrets -------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL with its password (and a token-like user name) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = (f"{parts.username}:***@" if parts.password is not None else "***@") + host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc))


def secrets_in(environ: dict[str, str]) -> list[str]:
    """The values that must never be printed, read from the environment as the settings are."""
    found = [environ.get(name, "") for name in ("LLMGW_UPSTREAM_TOKEN", "LLMGW_VISITOR_HASH_KEY")]
    for name in ("LLMGW_REDIS_URL", "LLMGW_UPSTREAM_URL"):
        # A malformed URL raises here; the config hop reports it without printing it.
        with contextlib.suppress(ValueError):
            found.append(urlsplit(environ.get(name, "")).password or "")
    return [value for value in found if value]


def scrub(text: str, secrets: list[str]) -> str:
    """Defence in depth: the hops never print a secret, and this removes any that slipped in."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def reason(exc: BaseException) -> str:
    """A short cause: "Connection refused" rather than asyncio's "Connect call failed (...)"."""
    if isinstance(exc, OSError) and exc.errno:  # negative: a resolver (getaddrinfo) error
        return os.strerror(exc.errno) if exc.errno > 0 else str(exc.strerror)
    return str(exc).strip() or type(exc).__name__


# --- Redis -----------------------------------------------------------------------------------


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


# --- the network path to the model host ------------------------------------------------------


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def check_dns(settings: Settings, _: Clients) -> Finding:
    """The upstream host name resolves from here."""
    host, port = host_and_port(settings.upstream_url)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ok(f"{host} is an address, nothing to resolve")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError) as exc:
        raise HopFailed(
            f"{host} does not resolve ({reason(exc)})",
            "check the host name in LLMGW_UPSTREAM_URL; a *.ts.net name resolves publicly only "
            "while Funnel is on (`tailscale funnel status` on the model host)",
        ) from None
    addresses = sorted({str(entry[4][0]) for entry in found})
    return ok(f"{host} → {', '.join(addresses[:3])}")


async def check_tunnel(settings: Settings, _: Clients) -> Finding:
    """Something accepts a TCP connection at the upstream host and port."""
    host, port = host_and_port(settings.upstream_url)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise HopFailed(
            f"no answer from {host}:{port} in {CONNECT_TIMEOUT:g} s", TUNNEL_ADVICE
        ) from None
    except OSError as exc:
        raise HopFailed(f"cannot connect to {host}:{port} ({reason(exc)})", TUNNEL_ADVICE) from None
    writer.close()
    return ok(f"connected to {host}:{port} in {elapsed_ms(started)} ms")


async def check_tls(settings: Settings, _: Clients) -> Finding:
    """The TLS handshake succeeds with the certificates the gateway trusts; days to expiry."""
    host, port = host_and_port(settings.upstream_url)
    context = httpx.create_ssl_context()  # what the gateway's client trusts, SSL_CERT_FILE too
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except ssl.SSLCertVerificationError as exc:
        raise HopFailed(
            f"certificate refused: {exc.verify_message}",
            "use the Funnel's https://<node>.<tailnet>.ts.net name (its certificate is issued for "
            "it); a custom CA goes in SSL_CERT_FILE",
        ) from None
    except (OSError, TimeoutError) as exc:
        raise HopFailed(f"TLS handshake failed ({reason(exc)})", TUNNEL_ADVICE) from None
    certificate: dict[str, Any] = writer.get_extra_info("peercert") or {}
    protocol = writer.get_extra_info("ssl_object").version()
    writer.close()
    days = int((ssl.cert_time_to_seconds(certificate["notAfter"]) - time.time()) // 86_400)
    detail = f"{protocol}, certificate valid for {days} more days"
    if days < CERT_WARN_DAYS:
        return warn(detail, "renewal is late: `tailscale cert` / Funnel renews 30 days ahead")
    return ok(detail)


# --- HTTP through nginx to the model server --------------------------------------------------


def auth_headers(settings: Settings) -> dict[str, str]:
    token = settings.upstream_token
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


async def fetch(clients: Clients, path: str, headers: dict[str, str]) -> httpx.Response:
    """GET path; a transport failure fails the hop as a tunnel problem."""
    try:
        return await clients.http.get(path, headers=headers)
    except httpx.HTTPError as exc:
        raise HopFailed(f"GET {path}: no HTTP answer ({reason(exc)})", TUNNEL_ADVICE) from None


def answer_failure(response: httpx.Response, what: str) -> HopFailed:
    """A non-2xx answer, diagnosed as the gateway would (app/outage.py)."""
    server = response.headers.get("server")
    outage = classify_response(response.status_code, server, response.content[:4096])
    via = " (Server: nginx)" if (server or "").lower().startswith("nginx") else ""
    detail = f"{what} answered {response.status_code}{via}"
    if outage is None:
        return HopFailed(detail, "read the model server's log for this request")
    return HopFailed(f"{detail}: {outage}", OUTAGE_ADVICE[outage])


async def check_nginx(_: Settings, clients: Clients) -> Finding:
    """nginx answers its own /healthz, without a token."""
    response = await fetch(clients, "/healthz", {})
    server = response.headers.get("server", "")
    from_nginx = server.lower().startswith("nginx")
    if response.status_code == 200:
        return ok(f"/healthz answered 200 without a token (Server: {server or 'not sent'})")
    if response.status_code >= 500 and not from_nginx:
        raise HopFailed(
            f"/healthz answered {response.status_code} without `Server: nginx`: the tunnel "
            "answers, nginx behind it does not",
            OUTAGE_ADVICE[OutageClass.NGINX_DOWN],
        )
    if response.status_code >= 500:
        raise HopFailed(
            f"nginx answered {response.status_code} to its own /healthz",
            f"`docker compose logs nginx` in {HOME}",
        )
    if from_nginx:
        return warn(
            f"nginx answers, but /healthz is {response.status_code}",
            f"use the site config of {HOME}/nginx, which answers /healthz without a token",
        )
    return ok(f"no nginx here (/healthz: {response.status_code}): the URL reaches the model server")


async def check_token(settings: Settings, clients: Clients) -> Finding:
    """The token is accepted, and the door is shut to requests without one."""
    answer = await fetch(clients, "/v1/models", auth_headers(settings))
    token = settings.upstream_token
    if answer.status_code in (401, 403) and token is None:
        raise HopFailed(
            f"the model server asks for a token ({answer.status_code}) and none is set",
            "set LLMGW_UPSTREAM_TOKEN to a token of infra/home/nginx/tokens.map",
        )
    if answer.status_code in (401, 403):
        raise HopFailed(f"token refused ({answer.status_code})", REFUSED_ADVICE)
    if token is None:
        return open_door_finding(settings, "no token set, and none asked for")
    if len(token.get_secret_value()) < MIN_TOKEN_CHARS:
        return warn("accepted, but short", "make a new one with `openssl rand -hex 32`")
    without = await fetch(clients, "/v1/models", {})
    if without.status_code < 400:
        return warn(
            f"accepted, but a request without it is answered too ({without.status_code})",
            f"anyone with the URL can use the model: put {HOME}'s nginx (tokens.map) in front",
        )
    return ok(f"not refused ({answer.status_code}); refused without it ({without.status_code})")


def open_door_finding(settings: Settings, detail: str) -> Finding:
    if settings.upstream_url.startswith("https://"):
        return warn(
            f"{detail}: the public URL answers anyone",
            f"put {HOME}'s nginx with tokens.map in front, and set LLMGW_UPSTREAM_TOKEN",
        )
    return ok(detail)


def model_ids(response: httpx.Response) -> list[str]:
    """The ids of an OpenAI-style model list, or a failed hop when it is not one."""
    try:
        entries = response.json()["data"]
        return [str(entry["id"]) for entry in entries]
    except (ValueError, KeyError, TypeError):
        raise HopFailed(
            f"{response.request.url.path} is not an OpenAI-style model list",
            "LLMGW_UPSTREAM_URL must reach an OpenAI-compatible server (LM Studio, llama.cpp, "
            "Ollama, vLLM)",
        ) from None


async def check_models(settings: Settings, clients: Clients) -> Finding:
    """/v1/models answers with a model list."""
    response = await fetch(clients, "/v1/models", auth_headers(settings))
    if response.status_code != 200:
        raise answer_failure(response, "/v1/models")
    ids = model_ids(response)
    if not ids:
        return ok("answers, lists none (LM Studio lists only loaded models)")
    return ok(f"{len(ids)} listed: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}")


async def check_model_loaded(settings: Settings, clients: Clients) -> Finding:
    """A model is loaded, and it is LLMGW_MODEL: LM Studio's /api/v0/models, else /v1/models."""
    response = await fetch(clients, "/api/v0/models", auth_headers(settings))
    states = lm_studio_states(response)
    if states is None:  # not LM Studio: what /v1/models lists is what can answer
        listed = await fetch(clients, "/v1/models", auth_headers(settings))
        return listed_model(settings, model_ids(listed))
    loaded = [model for model, state in states.items() if state == "loaded"]
    advice = f"load {settings.model} in LM Studio (Developer tab) or `lms load {settings.model}`"
    if not loaded:
        raise HopFailed(f"no model loaded ({len(states)} downloaded)", advice)
    if settings.model not in loaded:
        return warn(
            f"{settings.model} (LLMGW_MODEL) is not loaded; loaded: {', '.join(loaded[:3])}",
            f"{advice}, or set LLMGW_MODEL to a loaded one",
        )
    return ok(f"{settings.model} is loaded")


def lm_studio_states(response: httpx.Response) -> dict[str, str] | None:
    """{model: state} from LM Studio's REST API, or None when this is not LM Studio."""
    if response.status_code != 200:
        return None
    try:
        return {str(entry["id"]): str(entry["state"]) for entry in response.json()["data"]}
    except (ValueError, KeyError, TypeError):
        return None


def listed_model(settings: Settings, ids: list[str]) -> Finding:
    if settings.model in ids:
        return ok(f"{settings.model} is listed (not LM Studio: load state unknown)")
    raise HopFailed(
        f"{settings.model} (LLMGW_MODEL) is not among the listed models",
        f"set LLMGW_MODEL to one of: {', '.join(ids[:5]) or 'none listed'}",
    )


async def check_generation(settings: Settings, clients: Clients) -> Finding:
    """A one-token streamed answer through /v1/responses, and its time to first token."""
    payload = {
        "model": settings.model,
        "input": "Say OK.",
        "max_output_tokens": 1,
        "stream": True,
        "store": False,
    }
    timeout = min(settings.first_token_timeout, GENERATION_TIMEOUT)
    try:
        async with asyncio.timeout(timeout):
            ttft, total = await one_token(clients, payload, auth_headers(settings))
    except TimeoutError:
        raise HopFailed(
            f"no complete answer within {timeout:g} s",
            "the model is stuck or very slow: look at LM Studio's server log",
        ) from None
    except httpx.HTTPError as exc:
        raise HopFailed(f"the stream broke ({reason(exc)})", TUNNEL_ADVICE) from None
    detail = f"first token after {ttft:.2f} s, done after {total:.2f} s"
    if ttft > settings.governor_ttft_limit_seconds:
        return warn(detail, "above LLMGW_GOVERNOR_TTFT_LIMIT_SECONDS: the governor sheds load")
    return ok(detail)


async def one_token(
    clients: Clients, payload: dict[str, object], headers: dict[str, str]
) -> tuple[float, float]:
    """(time to the first delta, time to the end) of one streamed answer."""
    started = time.perf_counter()
    first: float | None = None
    path = "/v1/responses"
    async with aconnect_sse(clients.http, "POST", path, json=payload, headers=headers) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            raise answer_failure(source.response, path)
        async for event in source.aiter_sse():
            kind = event.event if event.event != "message" else event_type(event.data)
            if first is None and kind.endswith(".delta"):
                first = time.perf_counter() - started
            if kind in ("error", "response.failed"):
                raise HopFailed(f"the model failed: {event.data[:200]}", "see LM Studio's log")
            if kind in ("response.completed", "response.incomplete"):
                total = time.perf_counter() - started
                return (total if first is None else first), total
    raise HopFailed("the stream ended without response.completed", "see LM Studio's log")


def event_type(data: str) -> str:
    try:
        return str(json.loads(data).get("type", ""))
    except (ValueError, AttributeError):
        return ""


# --- the probe -------------------------------------------------------------------------------


async def check_probe(settings: Settings, clients: Clients) -> Finding:
    """A probe agent publishes fresh snapshots to Redis (`{prefix}:probe:<host>` hashes)."""
    if clients.redis is None:
        raise HopFailed(
            "no shared Redis: the probe has nowhere to publish",
            "set LLMGW_REDIS_URL here and for `llmgw probe` on the model host",
        )
    pattern = "{" + settings.key_prefix + "}:probe:*"
    keys = [key async for key in clients.redis.scan_iter(match=pattern, count=100)]
    if not keys:
        raise HopFailed(
            f"no probe snapshot in Redis ({pattern})",
            "start `llmgw probe` on the model host (infra/probe/README.md), with this "
            "LLMGW_REDIS_URL and LLMGW_KEY_PREFIX",
        )
    ages = {host_of(key): await snapshot_age(clients.redis, key) for key in keys}
    limit = settings.probe_stale_seconds
    fresh = {host: age for host, age in ages.items() if abs(age) <= limit}
    described = ", ".join(f"{host} {age:.1f} s old" for host, age in sorted(ages.items()))
    if not fresh:
        raise HopFailed(
            f"stale: {described} (stale after {limit:g} s)",
            "the probe stopped publishing, or the clocks disagree: check `llmgw probe` on the "
            "model host (launchctl or systemctl, infra/probe) and NTP on both machines",
        )
    return ok(f"fresh: {described}")


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


# --- running the hops ------------------------------------------------------------------------


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


CHECKS: dict[str, Check] = {
    "redis": check_redis,
    "admit-script": check_admit_script,
    "dns": check_dns,
    "tunnel": check_tunnel,
    "tls": check_tls,
    "nginx": check_nginx,
    "token": check_token,
    "models": check_models,
    "model-loaded": check_model_loaded,
    "generation": check_generation,
    "probe": check_probe,
}
HOPS = tuple(CHECKS)  # in order, after config


def hops(settings: Settings) -> list[str]:
    """Every hop after config, in order, for this configuration (TLS only for https)."""
    https = settings.upstream_url.startswith("https://")
    return [name for name in HOPS if https or name != "tls"]


@asynccontextmanager
async def opened_clients(settings: Settings) -> AsyncIterator[Clients]:
    """Short timeouts, no retries: the doctor reports a failure, it does not hide it."""
    async with AsyncExitStack() as stack:
        timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        http = httpx.AsyncClient(base_url=settings.upstream_url, timeout=timeout)
        stack.push_async_callback(http.aclose)
        redis = None
        if settings.redis_url is not None:
            redis = aioredis.Redis.from_url(
                settings.redis_url.get_secret_value(),
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=READ_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            stack.push_async_callback(redis.aclose)
        yield Clients(http=http, redis=redis)


async def run_hop(check: Check, settings: Settings, clients: Clients) -> Finding:
    try:
        return await check(settings, clients)
    except HopFailed as failure:
        return Finding(Result.FAIL, failure.detail, failure.advice)
    except Exception as exc:  # an answer nobody foresaw: report it, never crash the doctor
        return Finding(Result.FAIL, f"unexpected {type(exc).__name__}: {reason(exc)}")


async def diagnose() -> list[HopReport]:
    """Run every hop in order; after the first failure the rest are skipped."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        advice = "fix the variable named here (README.md, Configuration)"
        failed = HopReport("config", Result.FAIL, str(exc), advice)
        return [failed, *(HopReport(name, Result.SKIPPED, "") for name in HOPS)]
    where = f"model {settings.model}, upstream {redact_url(settings.upstream_url)}"
    reports = [HopReport("config", Result.OK, f"valid: {where}")]
    async with opened_clients(settings) as clients:
        for name in hops(settings):
            if reports[-1].result in (Result.FAIL, Result.SKIPPED):
                reports.append(HopReport(name, Result.SKIPPED, ""))
                continue
            finding = await run_hop(CHECKS[name], settings, clients)
            reports.append(HopReport(name, finding.result, finding.detail, finding.advice))
    return reports


# --- the table -------------------------------------------------------------------------------

HOP_WIDTH, RESULT_WIDTH, DETAIL_WIDTH, ADVICE_WIDTH = 14, 9, 58, 60


def render(reports: list[HopReport]) -> str:
    """The table (hop, result, detail, what to do) and a closing verdict."""
    lines = [row("hop", "result", "detail", "what to do")]
    lines += [row(r.hop, r.result, r.detail, r.advice) for r in reports]
    return "\n".join([*lines, "", verdict(reports)]) + "\n"


def row(hop: str, result: str, detail: str, advice: str) -> str:
    """One row; long details and advice wrap onto indented continuation lines."""
    details = wrapped(detail, DETAIL_WIDTH - 2)
    advices = wrapped(advice, ADVICE_WIDTH)
    height = max(len(details), len(advices), 1)
    details += [""] * (height - len(details))
    advices += [""] * (height - len(advices))
    lines = []
    for index in range(height):
        first = index == 0
        left = (hop if first else "").ljust(HOP_WIDTH) + (result if first else "").ljust(
            RESULT_WIDTH
        )
        lines.append((left + details[index].ljust(DETAIL_WIDTH) + advices[index]).rstrip())
    return "\n".join(lines)


def wrapped(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def verdict(reports: list[HopReport]) -> str:
    failed = next((report for report in reports if report.result is Result.FAIL), None)
    if failed is not None:
        return f"FAIL at {failed.hop}: fix that hop first, then run `llmgw doctor` again."
    warnings = sum(report.result is Result.WARN for report in reports)
    suffix = f", {warnings} with a warning" if warnings else ""
    return f"all {len(reports)} hops passed{suffix}."


def main(argv: list[str] | None = None) -> int:
    """`llmgw doctor`: 0 when every hop passes, 1 at the first failing hop."""
    parser = argparse.ArgumentParser(
        prog="llmgw doctor",
        description="Check every hop from here to the model, in order, and say what to do.",
    )
    parser.parse_args(argv)
    reports = asyncio.run(diagnose())
    sys.stdout.write(scrub(render(reports), secrets_in(dict(os.environ))))
    return 1 if any(report.result is Result.FAIL for report in reports) else 0
