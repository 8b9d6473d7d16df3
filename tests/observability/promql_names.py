"""What PromQL expressions refer to (metric names, label matchers), and what exists to refer to:
the names GatewayMetrics' registry defines, the probe's and blackbox exporter's, Prometheus's own.

There is no PromQL parser in Python worth depending on; `promtool check rules` parses the
expressions, and this reads names out of them well enough for our own queries."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from app.telemetry import labels
from app.telemetry.labels import PROBE_SIGNALS
from app.telemetry.pass_metrics import PASS_CHECKS, PASS_REFUSALS
from app.telemetry.rag_metrics import RAG_MODES, RAG_SOURCES, RAG_TOOL_OUTCOMES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS: Final = re.compile(r"\{[^}]*\}")
_RANGES: Final = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS: Final = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER: Final = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "atan2"}
)
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

BLACKBOX: Final = frozenset(
    {"probe_success", "probe_duration_seconds", "probe_http_status_code"}
    | {
        "probe_http_duration_seconds",
        "probe_ssl_earliest_cert_expiry",
        "probe_dns_lookup_time_seconds",
    }
)
PROMETHEUS: Final = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"})
PROBE_AGENT: Final = frozenset(f"llmgw_probe_{signal}" for signal in PROBE_SIGNALS) | {
    "llmgw_probe_collector_up",
    "llmgw_probe_last_publish_timestamp_seconds",
    "llmgw_probe_publish_errors_total",
}
# The values each label may take in our queries: the gateway's fixed sets, and our job names.
LABEL_VALUES: Final = {
    "route": labels.ROUTES,
    "lane": frozenset(labels.LANES) | {labels.OTHER},
    "outcome": labels.OUTCOMES | frozenset(RAG_TOOL_OUTCOMES) | {labels.OTHER},
    "type": frozenset(labels.TOKEN_TYPES),
    "decision": labels.DECISIONS | {labels.OTHER},
    "path": labels.ADMISSION_PATHS | {labels.OTHER},
    "kind": frozenset(labels.LIMIT_KINDS),
    "signal": labels.PRESSURE_SIGNALS | labels.PROBE_SIGNALS | {labels.OTHER},
    "state": frozenset(labels.BREAKER_STATES) | frozenset(labels.MODEL_STATES) | {labels.OTHER},
    "door": frozenset(labels.TOKEN_DOORS) | {labels.OTHER},
    "from_state": frozenset(labels.BREAKER_STATES),
    "to_state": frozenset(labels.BREAKER_STATES),
    "class": frozenset(labels.OUTAGE_CLASSES) | {labels.OTHER},
    "result": frozenset(labels.QUEUE_RESULTS),
    "reason": frozenset(labels.ROUTE_REASONS) | PASS_REFUSALS | {labels.OTHER},
    "check": frozenset(PASS_CHECKS),
    "steps": frozenset(str(steps) for steps in range(21)),
    "mode": frozenset(RAG_MODES) | {labels.OTHER},
    "sources": frozenset(RAG_SOURCES),
    "job": frozenset({"llmgw", "llmgw-probe", "funnel", "prometheus"}),
}


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names an expression selects."""
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGES, _LABEL_LISTS):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()
        if before.isdigit() or before == "." or after.startswith("("):
            continue  # a number's exponent or a duration's unit; a function or an aggregation
        if match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def label_matchers(expr: str) -> list[tuple[str, str, str]]:
    """Every `label op "value"` in an expression."""
    return _MATCHER.findall(expr)


def unknown_label_values(expr: str) -> list[str]:
    """Matcher values outside their label's set (each alternative of a simple `a|b` regex)."""
    unknown = []
    for label, op, value in label_matchers(expr):
        allowed = LABEL_VALUES.get(label)
        if allowed is None or value.startswith("$") or value == "":
            continue
        alternatives = value.split("|") if "=~" in op or "!~" in op else [value]
        unknown += [f"{label}={alt}" for alt in alternatives if alt not in allowed]
    return unknown


def registry_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry's families can expose, labelled children or not."""
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names
