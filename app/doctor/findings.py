"""What a hop finds, the clients the hops share, and the advice the doctor gives."""

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

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
GENERATION_TIMEOUT = 30.0
CONCURRENCY_TIMEOUT = 30.0
CERT_WARN_DAYS = 14
MIN_TOKEN_CHARS = 32
HOME = "infra/home"
REFUSED_ADVICE = (
    "check LLMGW_UPSTREAM_TOKEN against infra/home/nginx/tokens.map "
    "(after editing it: `docker compose exec nginx nginx -s reload`)"
)
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


@dataclass(slots=True)
class Notes:
    """What a hop learnt that a later one needs."""

    model_asleep: bool = False  # the model hop saw it downloaded, not loaded, and JIT on


@dataclass(frozen=True, slots=True)
class Clients:
    """The connections the hops share: one HTTP client (no token by default), Redis if set,
    and the hops' notes to each other."""

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
