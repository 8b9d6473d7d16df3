"""Gateway configuration, read from `LLMGW_*` environment variables and validated at start."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]
MIN_SECRET_CHARS = 32
# A host's name in LLMGW_UPSTREAMS: it names its variables (LLMGW_UPSTREAM_<NAME>_URL), its
# metric label, its Redis keys and its entry in /readyz.
HOST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
# The one host of the old configuration (LLMGW_UPSTREAM_URL), and the hosted fallback's label.
SINGLE_HOST, FALLBACK_HOST = "home", "fallback"
HOST_FIELDS = ("url", "token", "model", "max_inflight", "weight", "probe")
MAX_HOSTS = 16
# Settings whose variable is not LLMGW_ and the field's name (the contract names it).
ENV_NAMES = {"pass_mode": "LLMGW_PASS"}


def env_name(field: str) -> str:
    """The environment variable of a setting."""
    return ENV_NAMES.get(field, f"LLMGW_{field.upper()}")


@dataclass(frozen=True, slots=True)
class UpstreamHost:
    """One model host: where it is, its token, its model, its parallel slots, its weight in
    the choice of a host, and the host name its probe publishes under (None: every probe's,
    the single host of the old configuration). `reserved` of its slots are held back for the
    owner. The hosted fallback is one too (`fallback`), chosen only when no home host can."""

    name: str
    url: str
    token: SecretStr | None
    model: str
    max_inflight: int
    weight: float = 1.0
    probe: str | None = None
    reserved: int = 0
    fallback: bool = False


class SettingsError(Exception):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    """Everything the gateway reads from its environment (see the README's table)."""

    model_config = SettingsConfigDict(env_prefix="LLMGW_", frozen=True, extra="ignore")

    upstream_url: str = "http://127.0.0.1:1234"
    upstream_token: SecretStr | None = None
    # Several model hosts by name (LLMGW_UPSTREAMS=mac1,linux1), each with its own
    # LLMGW_UPSTREAM_<NAME>_URL, _TOKEN, _MODEL, _MAX_INFLIGHT, _WEIGHT and _PROBE, read into
    # `upstream_hosts`; empty: the one host of LLMGW_UPSTREAM_URL.
    upstreams: Annotated[tuple[str, ...], NoDecode] = ()
    upstream_hosts: tuple[dict[str, Any], ...] = Field(default=(), exclude=True)  # derived
    # How a new conversation's host is picked: the most free places times weight and pressure
    # factor, or each host in turn (per replica; the benchmark's comparison).
    routing: Literal["pressure", "round_robin"] = "pressure"
    # The hosted fallback (OpenAI-compatible), used only when no home host can take a new
    # conversation, within a daily token budget.
    fallback_url: str | None = None
    fallback_token: SecretStr | None = None
    fallback_model: str | None = Field(default=None, min_length=1, max_length=200)
    fallback_daily_tokens: int = Field(default=200_000, ge=1)
    # Of that budget, what one visitor (each of their ids: address, thumbmark) may spend per
    # day; 0: no share, the whole budget is everyone's.
    fallback_visitor_share: float = Field(default=0.1, ge=0, le=1)
    fallback_max_inflight: int = Field(default=4, ge=1, le=10_000)
    # Also when every home host is up but full for longer than the waiting room.
    fallback_on_shed: bool = False
    # What the hosted fallback charges per million tokens, input and output, in
    # LLMGW_ENERGY_CURRENCY: `llmgw report energy` sets it beside the home hosts' energy cost.
    fallback_price_input_per_mtok: float = Field(default=0.0, ge=0, le=10_000)
    fallback_price_output_per_mtok: float = Field(default=0.0, ge=0, le=10_000)
    # Energy per answer (issue 20): the price of a kWh for `llmgw report energy`, and where
    # that report reads the metrics (unset: the gateway's own /metrics).
    energy_price_per_kwh: float = Field(default=0.30, ge=0, le=100)
    energy_currency: str = Field(default="EUR", min_length=1, max_length=8)
    prometheus_url: str | None = None
    # Each conversation's recent turns, kept so it can go on on another host when its own is
    # gone (app/chat/transcripts.py): for this long, at most this many tokens of turns and
    # bytes. Not governed by LLMGW_LOG_CONTENT.
    transcripts: bool = True
    transcript_seconds: int = Field(default=1_800, ge=60, le=86_400)
    transcript_max_tokens: int = Field(default=6_000, ge=100, le=1_000_000)
    transcript_max_bytes: int = Field(default=65_536, ge=1_024, le=10_000_000)
    model: str = Field(default="nvidia/nemotron-3-nano", min_length=1, max_length=200)
    temperature: float = Field(default=0.7, ge=0, le=2)
    reasoning_effort: Literal["none", "low", "medium", "high"] = "medium"
    max_output_tokens: int = Field(default=1024, ge=1, le=131_072)
    instructions: str | None = None
    # LM Studio's `ttl`: idle seconds before it unloads a model it loaded just in time (its own
    # default is 60 minutes). Unset: not sent.
    model_ttl: int | None = Field(default=None, ge=1, le=31_536_000)
    # The first token of the one request that wakes a model asleep (LM Studio loads it first).
    model_load_timeout: PositiveSeconds = 180.0

    redis_url: SecretStr | None = None
    key_prefix: str = Field(default="llmgw", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    global_limit: int = Field(default=30, ge=1)
    visitor_limit: int = Field(default=6, ge=1)
    window_seconds: int = Field(default=60, ge=1, le=86_400)
    # Tokens reserved per window (input estimate and answer cap, settled from the usage at the
    # stream's end); 0: no token window.
    global_token_limit: int = Field(default=0, ge=0)
    visitor_token_limit: int = Field(default=0, ge=0)
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = ()
    visitor_hash_key: SecretStr | None = None
    # The HMAC key of API keys (app/access): Redis holds only HMAC-SHA256(key_secret, key), so
    # every replica needs the same one. Unset: no key is accepted.
    key_secret: SecretStr | None = None
    # What keyed clients (/v1) may ask: an answer's tokens (a larger max_tokens is lowered to
    # this, and an absent one is this), the input's characters, and a body's size.
    key_max_output_tokens: int = Field(default=4_096, ge=1, le=1_048_576)
    key_max_input_chars: int = Field(default=400_000, ge=1, le=100_000_000)
    key_max_body_bytes: int = Field(default=2_000_000, ge=1_024, le=200_000_000)

    # Visitor passes (app/server/pass_gate.py): off; adaptive (a pass is asked for under
    # pressure); required (every anonymous chat needs one). Keyed clients need none.
    pass_mode: Literal["off", "adaptive", "required"] = Field(
        default="adaptive", validation_alias=AliasChoices("pass_mode", "LLMGW_PASS")
    )
    # The key that signs challenges and passes: shared through Redis unless set.
    pass_key: SecretStr | None = None
    pass_seconds: int = Field(default=1_800, ge=60, le=86_400)  # how long a pass lasts
    pass_chats: int = Field(default=20, ge=1, le=10_000)  # chats one pass is good for
    pass_challenge_seconds: int = Field(default=300, ge=10, le=3_600)
    # The work of a challenge: numbers to try at base difficulty, doubled per step; steps are
    # added under pressure and for a network asking for more than its share, up to the most.
    pass_base_number: int = Field(default=20_000, ge=100, le=10_000_000)
    pass_base_steps: int = Field(default=0, ge=0, le=20)
    pass_max_steps: int = Field(default=8, ge=0, le=20)
    pass_network_share: int = Field(default=6, ge=1, le=100_000)  # challenges per window
    # `adaptive`: chats without a pass one network may send per window before it needs passes
    # (its rate is no longer normal); unset: three visitors' worth (3 x LLMGW_VISITOR_LIMIT).
    pass_network_chats: int | None = Field(default=None, ge=1, le=1_000_000)

    # The owner's posts (app/posts): the SQLite file `llmgw posts index` builds, and how the
    # replicas share it: in Redis (published there, each replica keeps a copy of its own), or
    # that one file; auto is Redis when LLMGW_REDIS_URL is set.
    posts_index: str = Field(default="posts.sqlite3", min_length=1, max_length=4_096)
    posts_share: Literal["auto", "redis", "file"] = "auto"
    posts_refresh_seconds: float = Field(default=30.0, ge=1, le=86_400)
    # An index older than this (seconds since `llmgw posts index` last ran) is stale: the
    # gateway exports it as llmgw_posts_index_max_age_seconds, which PostsIndexStale uses.
    posts_index_max_age: float = Field(default=604_800, ge=60, le=31_536_000)
    # A folder's post without `url:` in its front matter is at this URL plus its path.
    posts_base_url: str | None = None
    # The post's body in an HTML page (a CSS selector); unset: article, main, or the body.
    posts_content_selector: str | None = Field(default=None, min_length=1, max_length=500)
    posts_passage_tokens: int = Field(default=256, ge=32, le=4_096)
    # Dense search (the posts-dense extra): an OpenAI-compatible /v1/embeddings; unset: off.
    posts_embeddings_url: str | None = None
    posts_embeddings_model: str = Field(
        default="text-embedding-nomic-embed-text-v1.5", min_length=1, max_length=200
    )
    posts_embeddings_token: SecretStr | None = None
    # nomic-embed-text is trained with these task prefixes; another model may want none.
    posts_query_prefix: str = Field(default="search_query: ", max_length=100)
    posts_document_prefix: str = Field(default="search_document: ", max_length=100)
    # The model reads the posts (app/rag): `tools` offers it `search_posts`, which the gateway
    # runs; `context` searches with the visitor's words up front and puts the passages in the
    # instructions (for models not trained for tool use); `auto` picks one per host from the
    # model's `trained_for_tool_use`. Unset: off until an index exists, then `auto`.
    rag: Literal["off", "tools", "context", "auto"] | None = None
    rag_max_rounds: int = Field(default=2, ge=1, le=8)  # tool rounds per answer
    rag_passages: int = Field(default=4, ge=1, le=20)  # passages per search
    rag_max_tokens: int = Field(default=1_200, ge=50, le=32_000)  # of passages per search

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Both cap a request's head at max_header_bytes: h11 by itself, httptools (several times
    # faster) through app/server/http_protocol.py.
    http_parser: Literal["h11", "httptools"] = "httptools"
    max_header_bytes: int = Field(default=16_384, ge=1_024, le=1_048_576)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_content: bool = False

    max_body_bytes: int = Field(default=32_768, ge=256, le=10_000_000)
    max_input_chars: int = Field(default=8_000, ge=1)
    max_messages: int = Field(default=32, ge=1, le=1_000)

    max_inflight: int = Field(default=4, ge=1, le=1_000_000)
    # Of max_inflight, the places only the owner's keys may fill (app/protection/governor.py).
    owner_reserved_inflight: int = Field(default=1, ge=0)
    lease_seconds: float = Field(default=30.0, ge=3, le=3_600)
    fallback_share: float = Field(default=0.5, gt=0, le=1)
    queue_wait_seconds: float = Field(default=0.5, ge=0, le=60)  # 0: shed at once
    queue_size: int = Field(default=8, ge=0, le=10_000)

    governor_soft: float = Field(default=0.6, ge=0, lt=1)
    governor_hard: float = Field(default=0.9, gt=0, le=1)
    governor_floor: float = Field(default=0.25, gt=0, le=1)
    governor_relax_per_second: float = Field(default=0.02, gt=0, le=1)
    governor_ttft_limit_seconds: PositiveSeconds = 5.0
    governor_gpu_weight: float = Field(default=0.5, ge=0, le=1)
    probe_stale_factor: float = Field(default=0.5, gt=0, le=1)
    probe_stale_seconds: PositiveSeconds = 10.0
    probe_poll_seconds: PositiveSeconds = 5.0

    breaker_failures: int = Field(default=3, ge=1, le=100)
    breaker_cooldown: PositiveSeconds = 5.0
    breaker_max_cooldown: PositiveSeconds = 120.0
    breaker_trials: int = Field(default=2, ge=1, le=100)
    health_interval: float = Field(default=5.0, ge=0, le=3_600)  # 0: no active check
    # Active checks in a row that must time out before a slow host is called down (a busy host
    # answers slowly; one that refuses the connection is down at once).
    health_failures: int = Field(default=3, ge=1, le=100)

    connect_timeout: PositiveSeconds = 5.0
    first_token_timeout: PositiveSeconds = 60.0
    idle_timeout: PositiveSeconds = 30.0
    total_timeout: PositiveSeconds = 300.0

    @model_validator(mode="after")
    def _soft_below_hard(self) -> Settings:
        if self.governor_soft >= self.governor_hard:
            raise ValueError("LLMGW_GOVERNOR_SOFT must be below LLMGW_GOVERNOR_HARD")
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_reserve_for_one_place(cls, data: Any) -> Any:
        """One place in all (a model server that runs one prediction at a time): unless set,
        none is held back for the owner, or visitors would have no place at all."""
        if not isinstance(data, dict) or "owner_reserved_inflight" in data:
            return data
        try:
            one_place = int(data.get("max_inflight", 4)) <= 1
        except (TypeError, ValueError):  # its own validation says what is wrong
            return data
        return {**data, "owner_reserved_inflight": 0} if one_place else data

    @model_validator(mode="after")
    def _reserved_below_inflight(self) -> Settings:
        if self.owner_reserved_inflight >= self.max_inflight:
            raise ValueError(
                "LLMGW_OWNER_RESERVED_INFLIGHT must be below LLMGW_MAX_INFLIGHT (0: none held"
                " back for the owner), or no place is left for the other lanes"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _read_hosts(cls, data: Any) -> Any:
        """Each host of LLMGW_UPSTREAMS with its own variables, from the arguments given
        (`upstream_mac1_url=`) or the environment (LLMGW_UPSTREAM_MAC1_URL)."""
        if not isinstance(data, dict) or "upstream_hosts" in data:
            return data
        names = data.get("upstreams") or ()
        if isinstance(names, str):
            names = _split(names)
        hosts = []
        for raw in names:
            name = str(raw).strip().lower()
            if not HOST_NAME.match(name) or name == FALLBACK_HOST:
                raise ValueError(
                    f"LLMGW_UPSTREAMS: {raw!r} is not a host name (a letter, then letters,"
                    " digits or _, at most 24; not 'fallback')"
                )
            host: dict[str, Any] = {"name": name}
            for part in HOST_FIELDS:
                key = f"upstream_{name}_{part}"
                value = data.get(key, os.environ.get(f"LLMGW_{key.upper()}"))
                if value is not None and value != "":
                    host[part] = value
            hosts.append(host)
        return {**data, "upstreams": tuple(h["name"] for h in hosts), "upstream_hosts": hosts}

    @model_validator(mode="after")
    def _hosts_valid(self) -> Settings:
        if len(set(self.upstreams)) != len(self.upstreams):
            raise ValueError("LLMGW_UPSTREAMS: a host is named twice")
        if len(self.upstreams) > MAX_HOSTS:
            raise ValueError(f"LLMGW_UPSTREAMS: at most {MAX_HOSTS} hosts")
        self.hosts()  # each host's variables, checked now: the message names the variable
        if self.fallback_url is not None and self.fallback_model is None:
            raise ValueError("LLMGW_FALLBACK_MODEL must be set with LLMGW_FALLBACK_URL")
        return self

    def hosts(self) -> tuple[UpstreamHost, ...]:
        """The home hosts: those of LLMGW_UPSTREAMS, or the one of LLMGW_UPSTREAM_URL."""
        reserve_set = "owner_reserved_inflight" in self.model_fields_set
        if not self.upstream_hosts:
            return (
                UpstreamHost(
                    SINGLE_HOST,
                    self.upstream_url,
                    self.upstream_token,
                    self.model,
                    self.max_inflight,
                    reserved=self.owner_reserved_inflight,
                ),
            )
        return tuple(_host(raw, self, reserve_set=reserve_set) for raw in self.upstream_hosts)

    def fallback_host(self) -> UpstreamHost | None:
        """The hosted fallback, when LLMGW_FALLBACK_URL is set."""
        if self.fallback_url is None or self.fallback_model is None:
            return None
        return UpstreamHost(
            FALLBACK_HOST,
            self.fallback_url,
            self.fallback_token,
            self.fallback_model,
            self.fallback_max_inflight,
            fallback=True,
        )

    @field_validator(
        "upstream_url", "fallback_url", "posts_base_url", "posts_embeddings_url", "prometheus_url"
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _url(value)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None  # LLMGW_REDIS_URL= (empty) is unset: the embedded Redis
        if isinstance(value, str) and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("posts_base_url", "posts_embeddings_url", "prometheus_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_secret", "pass_key", "posts_embeddings_token", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_secret", "pass_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(part.strip()) for part in _split(value))
        return value

    @field_validator("upstreams", mode="before")
    @classmethod
    def _parse_names(cls, value: object) -> object:
        return tuple(_split(value)) if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return tuple(_split(value)) if isinstance(value, str) else value


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _host(raw: dict[str, Any], settings: Settings, *, reserve_set: bool) -> UpstreamHost:
    """One host of LLMGW_UPSTREAMS; a missing variable takes the single host's setting
    (LLMGW_MODEL, LLMGW_MAX_INFLIGHT), except its URL, which it must have."""
    name = raw["name"]

    def var(part: str) -> str:
        return f"LLMGW_UPSTREAM_{name.upper()}_{part.upper()}"

    if "url" not in raw:
        raise ValueError(f"{var('url')} must be set for host {name!r} of LLMGW_UPSTREAMS")
    try:
        url = _url(str(raw["url"]))
    except ValueError as exc:
        raise ValueError(f"{var('url')}: {exc}") from None
    model = str(raw.get("model", settings.model))
    if not 1 <= len(model) <= 200:
        raise ValueError(f"{var('model')}: must be 1 to 200 characters")
    slots = _number(
        raw, "max_inflight", settings.max_inflight, var, kind=int, bounds=(1, 1_000_000)
    )
    weight = _number(raw, "weight", 1.0, var, kind=float, bounds=(0.01, 1_000.0))
    reserved = settings.owner_reserved_inflight if reserve_set or slots > 1 else 0
    if reserve_set and reserved >= slots:
        raise ValueError(
            f"LLMGW_OWNER_RESERVED_INFLIGHT must be below {var('max_inflight')} ({slots}),"
            " or no place is left on that host for the other lanes"
        )
    token = raw.get("token")
    probe = str(raw.get("probe", name))
    return UpstreamHost(
        name,
        url,
        token if isinstance(token, SecretStr) or token is None else SecretStr(str(token)),
        model,
        int(slots),
        float(weight),
        probe,
        reserved=min(reserved, int(slots) - 1),
    )


def _number(
    raw: dict[str, Any],
    part: str,
    default: float,
    var: Any,
    *,
    kind: type[int | float],
    bounds: tuple[float, float],
) -> float:
    value = raw.get(part)
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{var(part)}: must be a number, not {value!r}") from None
    if not bounds[0] <= number <= bounds[1]:
        raise ValueError(f"{var(part)}: must be from {bounds[0]} to {bounds[1]}")
    return number


def _problem(location: tuple[int | str, ...], message: str) -> str:
    if not location:  # a rule across fields names its variables in its message
        return message.removeprefix("Value error, ")
    return f"{env_name(str(location[0]))}: {message}"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [_problem(error["loc"], error["msg"]) for error in exc.errors()]
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
