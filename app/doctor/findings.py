"""What a hop finds, what the hops share for the host under check, and the advice the doctor
gives."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from app.protection.outage import OutageClass
from app.settings import Settings

if TYPE_CHECKING:
    import httpx
    import redis.asyncio as aioredis

    from app.doctor.targets import Target

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
GENERATION_TIMEOUT = 30.0
CONCURRENCY_TIMEOUT = 30.0
CERT_WARN_DAYS = 14
MIN_TOKEN_CHARS = 32
HOME = "infra/home"
LMSTUDIO_TOKENS = "one of LM Studio's API tokens (Developer → Server Settings → Manage Tokens)"
FORWARDED_TOKEN_ADVICE = (
    f"set LLMGW_LMSTUDIO_API_TOKEN in {HOME}/.env to {LMSTUDIO_TOKENS}, then "
    f"`docker compose up -d nginx` in {HOME} (a restart keeps the old value)"
)
INCOMPATIBLE_ADVICE = (
    "update LM Studio to 0.3.29 or later, the first with POST /v1/responses; another server "
    "needs a streaming OpenAI Responses API"
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
    OutageClass.MODEL_NOT_LOADED: "load the model in LM Studio (Developer tab) or with "
    "`lms load <model>`",
}
PROVIDER_ADVICE = (
    "the hosted provider answers, but not as asked: check LLMGW_FALLBACK_URL (its "
    "OpenAI-compatible base) and the provider's status page"
)
PROVIDER_UNREACHABLE_ADVICE = (
    "check the host name in LLMGW_FALLBACK_URL, and this machine's way out to the internet "
    "(proxy, firewall)"
)


def refused_advice(target: Target) -> str:
    """The token nginx on the model host checks, and where it checks it."""
    return (
        f"check {target.var('token')} against {HOME}/nginx/tokens.map "
        "(after editing it: `docker compose exec nginx nginx -s reload`)"
    )


def outage_advice(outage: OutageClass, target: Target) -> str:
    """What to do about an outage of this host."""
    if outage is OutageClass.TOKEN_INVALID:
        return refused_advice(target)
    return OUTAGE_ADVICE[outage]


def unreachable_advice(target: Target) -> str:
    """What to do when nothing answers at the host's address."""
    return PROVIDER_UNREACHABLE_ADVICE if target.fallback else TUNNEL_ADVICE


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
    """One row of the table; `host` labels the hops of a named host (empty: the single host's,
    or a hop shared by every host)."""

    hop: str
    result: Result
    detail: str
    advice: str = ""
    host: str = ""

    @property
    def label(self) -> str:
        return f"{self.host} {self.hop}" if self.host else self.hop


class HopFailed(Exception):
    """A hop found the problem; the detail says what, the advice what to do."""

    def __init__(self, detail: str, advice: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.advice = advice


@dataclass(slots=True)
class Notes:
    """What a hop learnt that a later one needs."""

    model_asleep: bool = False  # the model hop saw it downloaded, not loaded, and JIT on


@dataclass(frozen=True, slots=True)
class Clients:
    """What the hops of one host share: the host under check, an HTTP client for it (no token
    by default), Redis if set (one for every host), and the hops' notes to each other."""

    target: Target
    http: httpx.AsyncClient
    redis: aioredis.Redis | None
    notes: Notes = field(default_factory=Notes)


Check = Callable[[Settings, Clients], Awaitable[Finding]]


def ok(detail: str, advice: str = "") -> Finding:
    return Finding(Result.OK, detail, advice)


def warn(detail: str, advice: str) -> Finding:
    return Finding(Result.WARN, detail, advice)


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
