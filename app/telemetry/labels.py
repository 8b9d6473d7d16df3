"""The fixed label values the gateway's metrics may carry, and the one function that bounds them.

A label value that is not in its set becomes `other`: a typo or a new enum member at a call site
shows up as `other` on a dashboard instead of as a new time series, and nothing a visitor sends
can ever reach a label.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final

OTHER: Final = "other"

ROUTES: Final = frozenset(
    {
        "/api/chat",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/models",
        "/healthz",
        "/readyz",
        "/metrics",
    }
)
OUTCOMES: Final = frozenset(
    {
        "ok",
        "rate_limited_visitor",
        "rate_limited_global",
        "rate_limited_tokens",
        "shed",
        "breaker_open",
        "upstream_error",
        "timeout",
        "client_cancelled",
        "bad_request",
        # The model server refused what the request asked: the visitor's doing, not the host's.
        "context_full",
        "conversation_expired",
        "upstream_rejected",
        "upstream_incompatible",
        # Keyed clients (/v1): a key's own windows or streams at once, a bad key, a model the
        # server does not list.
        "rate_limited_key",
        "rate_limited_concurrency",
        "unauthorized",
        "model_not_found",
        # The model kept calling search_posts past LLMGW_RAG_MAX_ROUNDS instead of answering.
        "tool_rounds",
    }
)
# Who asks (`lane` label): the owner's keys, the members' keys, the public widget's visitors.
LANES: Final = ("owner", "member", "public")
# Keys by name on `llmgw_key_requests_total`: names are the owner's, valid_name() keeps them
# tame, and past this many distinct names the rest share `other`.
MAX_KEY_NAMES: Final = 64
TOKEN_TYPES: Final = ("input", "output", "reasoning")
DECISIONS: Final = frozenset(
    {"admitted", "visitor", "global", "tokens", "shed", "conversation", "waking", "key"}
    | {"concurrency", "no_host", "fallback_budget", "visitor_pass", "pass_network"}
)
# The admission's own names for a decision, where they differ from the label (Limit.INFLIGHT).
DECISION_ALIASES: Final = {"inflight": "shed"}
ADMISSION_PATHS: Final = frozenset({"redis", "local", "fallback"})
QUEUE_RESULTS: Final = ("admitted", "refused")  # left the waiting room with a place or not
LIMIT_KINDS: Final = ("base", "effective")
PRESSURE_SIGNALS: Final = frozenset(
    {"gpu", "memory", "memory_psi", "swap", "cpu", "model_ttft", "gateway_ttft", "probe_stale"}
)
BREAKER_STATES: Final = ("closed", "open", "half_open")
OUTAGE_CLASSES: Final = (
    "tunnel",
    "nginx_down",
    "model_server_down",
    "token_invalid",
    "model_not_loaded",
    "host_offline",
    "model_missing",
)
# Which token a 401/403 was about (`llmgw_upstream_token_invalid{door}`): the gateway's for
# nginx, the one nginx forwards to LM Studio, the probe's for LM Studio.
TOKEN_DOORS: Final = ("gateway_nginx", "nginx_lmstudio", "probe_lmstudio")
# What the health check says of LLMGW_MODEL (`llmgw_model_state{state}`); "waking" while one
# request loads it.
MODEL_STATES: Final = ("ready", "sleeping", "waking", "missing", "not_an_llm", "unknown")
# What the probe agent measures on the model host (it exports each as llmgw_probe_<signal>).
PROBE_SIGNALS: Final = frozenset(
    {
        "memory_used_ratio",
        "memory_pressure_level",  # macOS: 1 normal, 2 warn, 4 critical
        "memory_psi_some_avg10",  # Linux PSI, percent
        "memory_psi_full_avg10",
        "swap_used_ratio",
        "swap_used_bytes",
        "cpu_ratio",
        "gpu_utilization_ratio",
        "gpu_memory_used_bytes",
        "gpu_memory_used_ratio",
        "gpu_memory_total_bytes",
        "gpu_memory_alloc_bytes",
        "model_server_up",
        "model_server_busy",  # checks in a row that timed out or were told 503
        "model_loaded",
        "model_available",
        "model_token_ok",
        "model_context_length",
        "model_server_latency_seconds",
        "synthetic_ttft_seconds",
        "synthetic_tokens_per_second",
        "synthetic_age_seconds",
    }
)
# Why a conversation went to the host it went to (`llmgw_host_routed_total{reason}`): a new one
# by the router's choice, a follow-up to the host that keeps its state, one moved to another
# host (its transcript sent) when its own was gone, the one request let through to load a
# sleeping model, and the hosted fallback when no home host could take it.
ROUTE_REASONS: Final = ("new", "follow_up", "moved", "waker", "fallback")
# Host names come from the probe's configuration, not from visitors; still, keep them tame.
HOST_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAX_PROBE_HOSTS: Final = 16


def bounded(value: str | Enum, allowed: frozenset[str] | tuple[str, ...]) -> str:
    """The label value for `value`: itself when allowed, else `other` (enums by their value)."""
    text = value.value if isinstance(value, Enum) else value
    return text if isinstance(text, str) and text in allowed else OTHER
