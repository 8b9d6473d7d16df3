"""GatewayMetrics: names, types, labels, buckets, exemplars and bounded label values."""

from __future__ import annotations

import math
from enum import Enum

import pytest

from app.telemetry import GatewayMetrics
from app.telemetry.labels import MAX_KEY_NAMES, MAX_PROBE_HOSTS

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

# family name (counters without _total) -> (type, label names)
EXPECTED = {
    "llmgw_requests": ("counter", {"route", "outcome"}),
    "llmgw_request_duration_seconds": ("histogram", {"route", "outcome"}),
    "llmgw_time_to_first_token_seconds": ("histogram", set()),
    "llmgw_time_per_output_token_seconds": ("histogram", set()),
    "llmgw_tokens": ("counter", {"type"}),
    "llmgw_tokens_reserved": ("counter", set()),
    "llmgw_tokens_refunded": ("counter", set()),
    "llmgw_tokens_spent": ("counter", set()),
    "llmgw_active_streams": ("gauge", set()),
    "llmgw_admission_decisions": ("counter", {"decision", "path"}),
    "llmgw_global_limit": ("gauge", {"kind"}),
    "llmgw_inflight_cap": ("gauge", {"kind"}),
    "llmgw_global_token_limit": ("gauge", {"kind"}),
    "llmgw_pressure": ("gauge", {"signal"}),
    "llmgw_pressure_combined": ("gauge", set()),
    "llmgw_governor_factor": ("gauge", set()),
    "llmgw_breaker_state": ("gauge", {"state"}),
    "llmgw_breaker_transitions": ("counter", {"from_state", "to_state"}),
    "llmgw_upstream_up": ("gauge", set()),
    "llmgw_upstream_failures": ("counter", {"class"}),
    "llmgw_upstream_outage": ("gauge", {"class"}),
    "llmgw_upstream_token_invalid": ("gauge", {"door"}),
    "llmgw_model_state": ("gauge", {"state"}),
    "llmgw_redis_up": ("gauge", set()),
    "llmgw_redis_command_duration_seconds": ("histogram", set()),
    "llmgw_queue_wait_seconds": ("histogram", {"result"}),
    "llmgw_redis_errors": ("counter", set()),
    "llmgw_redis_fallback_active": ("gauge", set()),
    "llmgw_probe_last_seen_timestamp_seconds": ("gauge", {"host"}),
    "llmgw_probe_signal": ("gauge", {"host", "signal"}),
    "llmgw_lane_requests": ("counter", {"lane", "outcome"}),
    "llmgw_lane_time_to_first_token_seconds": ("histogram", {"lane"}),
    "llmgw_lane_tokens": ("counter", {"lane", "type"}),
    "llmgw_lane_inflight": ("gauge", {"lane"}),
    "llmgw_lane_inflight_cap": ("gauge", {"lane"}),
    "llmgw_lane_queued": ("gauge", {"lane"}),
    "llmgw_key_requests": ("counter", {"key", "outcome"}),
    "llmgw_host_up": ("gauge", {"host"}),
    "llmgw_host_breaker_state": ("gauge", {"host", "state"}),
    "llmgw_host_outage": ("gauge", {"host", "class"}),
    "llmgw_host_model_state": ("gauge", {"host", "state"}),
    "llmgw_host_pressure": ("gauge", {"host"}),
    "llmgw_host_governor_factor": ("gauge", {"host"}),
    "llmgw_host_inflight_cap": ("gauge", {"host"}),
    "llmgw_host_inflight": ("gauge", {"host"}),
    "llmgw_host_routed": ("counter", {"host", "reason"}),
    "llmgw_host_requests": ("counter", {"host", "outcome"}),
    "llmgw_host_time_to_first_token_seconds": ("histogram", {"host"}),
    "llmgw_fallback_tokens": ("counter", set()),
    "llmgw_fallback_budget_used_tokens": ("gauge", set()),
    "llmgw_fallback_budget_tokens": ("gauge", set()),
    "llmgw_pass_challenges": ("counter", {"steps"}),
    "llmgw_pass_granted": ("counter", set()),
    "llmgw_pass_refused": ("counter", {"check", "reason"}),
    "llmgw_pass_difficulty_steps": ("gauge", set()),
    "llmgw_pass_required": ("gauge", set()),
    "llmgw_rag_tool_calls": ("counter", {"outcome"}),
    "llmgw_rag_search_seconds": ("histogram", {"mode"}),
    "llmgw_rag_passages_added": ("counter", {"mode"}),
    "llmgw_rag_tokens_added": ("counter", {"mode"}),
    "llmgw_rag_rounds": ("histogram", {"mode"}),
    "llmgw_rag_answers": ("counter", {"mode", "sources"}),
    "llmgw_posts_index_passages": ("gauge", set()),
    "llmgw_posts_index_posts": ("gauge", set()),
    "llmgw_posts_index_loaded": ("gauge", set()),
    "llmgw_posts_index_age_seconds": ("gauge", set()),
    "llmgw_posts_index_max_age_seconds": ("gauge", set()),
    # Energy per answer (issue 20), and the per-model traffic its report reads.
    "llmgw_answer_energy_joules": ("histogram", {"model", "host"}),
    "llmgw_answer_marginal_energy_joules": ("histogram", {"model", "host"}),
    "llmgw_answer_energy_per_output_token_joules": ("histogram", {"model", "host"}),
    "llmgw_energy_attributed_joules": ("counter", {"model", "host"}),
    "llmgw_energy_marginal_joules": ("counter", {"model", "host"}),
    "llmgw_energy_output_tokens": ("counter", {"model", "host"}),
    "llmgw_host_power_watts": ("gauge", {"host"}),
    "llmgw_host_idle_power_watts": ("gauge", {"host"}),
    "llmgw_host_energy_joules": ("counter", {"host"}),
    "llmgw_model_answers": ("counter", {"model", "host"}),
    "llmgw_model_tokens": ("counter", {"model", "host", "type"}),
    "llmgw_model_streaming_seconds": ("counter", {"model", "host"}),
    "llmgw_model_time_to_first_token_seconds": ("histogram", {"model", "host"}),
}
# OpenTelemetry GenAI semantic conventions, docs/gen-ai/gen-ai-metrics.md (bucket advice).
GENAI_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0]
GENAI_TTFT += [7.5, 10.0]
GENAI_TPOT = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()


def exercise(metrics: GatewayMetrics) -> None:
    """Call every recording method once, so every labelled family has a series."""
    metrics.request_finished("/api/chat", "ok", 1.5, trace_id=TRACE_ID)
    metrics.first_token(0.3, TRACE_ID)
    metrics.time_per_output_token(2.0, 21, TRACE_ID)
    metrics.tokens(input_tokens=10, output_tokens=20, reasoning_tokens=5)
    metrics.tokens_reserved(1_100)
    metrics.tokens_settled(reserved=1_100, spent=300)
    metrics.stream_started()
    metrics.admission("admitted", "redis")
    metrics.queue_wait(0.2, admitted=True)
    metrics.limits(base_global=30, effective_global=15, base_cap=4, effective_cap=2)
    metrics.pressure({"gpu": 0.7, "memory": 0.2}, combined=0.7, factor=0.5)
    metrics.breaker_changed("closed", "open")
    metrics.upstream_outage("tunnel")
    metrics.upstream_failure("tunnel")
    metrics.redis_state(up=True, fallback_active=False)
    metrics.redis_command(0.002, ok=False)
    metrics.probe_snapshot("studio", 1_700_000_000.0, {"gpu_utilization_ratio": 0.9})
    metrics.lane_request("owner", "ok", key="laptop")
    metrics.lane_first_token("owner", 0.2)
    metrics.lane_tokens("owner", input_tokens=10, output_tokens=20)
    metrics.lane_stream("owner", 1)
    metrics.lane_caps({"owner": 4, "member": 3, "public": 3})
    metrics.lane_queued({"public": 2})
    metrics.hosts_configured(["home"])
    metrics.rag_tool_call("ok")
    metrics.rag_search(0.003, 4, 900, "tools")
    metrics.rag_answer("tools", 1, sourced=True)
    metrics.energy_configured(["home"], ["m"])
    metrics.energy_model_answer("m", "home", input_tokens=5, output_tokens=9, ttft=0.2, streaming=1)
    metrics.energy_host_power("home", 40.0, 12.0)
    metrics.energy_host_joules("home", 80.0)
    metrics.energy_answer("m", "home", 60.0, 30.0, 9)


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    """A sample's value, or None when the series does not exist."""
    return metrics.registry.get_sample_value(name, labels)


def bucket_bounds(metrics: GatewayMetrics, name: str) -> list[float]:
    """The finite `le` bounds a histogram exposes."""
    family = next(f for f in metrics.registry.collect() if f.name == name)
    bounds = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
    return sorted(b for b in bounds if math.isfinite(b))


def test_every_metric_has_its_name_type_and_labels(metrics: GatewayMetrics) -> None:
    """Each documented metric exists with the documented type and label names, and no others."""
    exercise(metrics)
    families = {f.name: f for f in metrics.registry.collect() if f.name.startswith("llmgw_")}
    assert set(families) == set(EXPECTED)
    for name, (kind, label_names) in EXPECTED.items():
        family = families[name]
        assert family.type == kind, name
        seen = {key for sample in family.samples for key in sample.labels} - {"le"}
        assert seen == label_names, name


def test_genai_latency_histograms_use_the_semantic_convention_buckets(
    metrics: GatewayMetrics,
) -> None:
    """TTFT and time per output token use the OpenTelemetry GenAI bucket advice exactly."""
    assert bucket_bounds(metrics, "llmgw_time_to_first_token_seconds") == GENAI_TTFT
    assert bucket_bounds(metrics, "llmgw_time_per_output_token_seconds") == GENAI_TPOT


def test_slo_threshold_is_a_ttft_bucket_boundary(metrics: GatewayMetrics) -> None:
    """The TTFT SLO counts requests under 2.5 s, which needs a bucket boundary at exactly 2.5."""
    assert 2.5 in bucket_bounds(metrics, "llmgw_time_to_first_token_seconds")


def test_request_finished_counts_and_times_by_route_and_outcome(metrics: GatewayMetrics) -> None:
    """A finished request increments its counter and lands in its duration bucket."""
    metrics.request_finished("/api/chat", "rate_limited_visitor", 0.003)
    labels = {"route": "/api/chat", "outcome": "rate_limited_visitor"}
    assert value(metrics, "llmgw_requests_total", **labels) == 1
    assert value(metrics, "llmgw_request_duration_seconds_bucket", le="0.01", **labels) == 1
    assert value(metrics, "llmgw_request_duration_seconds_count", **labels) == 1


def test_chat_outcomes_exist_at_zero_before_any_request(metrics: GatewayMetrics) -> None:
    """Chat outcomes are exported at 0 from the start, so rate() and SLO ratios see the first."""
    for outcome in ("ok", "shed", "breaker_open", "upstream_error", "timeout"):
        assert value(metrics, "llmgw_requests_total", route="/api/chat", outcome=outcome) == 0


class Weird(Enum):
    OK = "ok"
    SURPRISE = "surprise"


@pytest.mark.parametrize(
    ("record", "sample", "labels"),
    [
        (
            lambda m: m.request_finished("/api/chat?u=visitor-123", "ok", 1.0),
            "llmgw_requests_total",
            {"route": "other", "outcome": "ok"},
        ),
        (
            lambda m: m.request_finished("/api/chat", "free text from upstream", 1.0),
            "llmgw_requests_total",
            {"route": "/api/chat", "outcome": "other"},
        ),
        (
            lambda m: m.request_finished("/api/chat", Weird.SURPRISE, 1.0),
            "llmgw_requests_total",
            {"route": "/api/chat", "outcome": "other"},
        ),
        (
            lambda m: m.admission("maybe", "carrier-pigeon"),
            "llmgw_admission_decisions_total",
            {"decision": "other", "path": "other"},
        ),
        (
            lambda m: m.upstream_failure("cosmic_rays"),
            "llmgw_upstream_failures_total",
            {"class": "other"},
        ),
        (
            lambda m: m.breaker_changed("closed", "ajar"),
            "llmgw_breaker_transitions_total",
            {"from_state": "closed", "to_state": "other"},
        ),
    ],
)
def test_unknown_label_values_become_other(
    metrics: GatewayMetrics, record: object, sample: str, labels: dict[str, str]
) -> None:
    """A label value outside its fixed set is recorded as `other`, never as itself."""
    assert callable(record)
    record(metrics)
    assert value(metrics, sample, **labels) == 1


def test_enum_members_are_recorded_by_their_value(metrics: GatewayMetrics) -> None:
    """An enum whose value is in the set is recorded under that value."""
    metrics.request_finished("/api/chat", Weird.OK, 0.5)
    assert value(metrics, "llmgw_requests_total", route="/api/chat", outcome="ok") == 1


class Limit(Enum):
    INFLIGHT = "inflight"
    GLOBAL = "global"


def test_admission_takes_the_admissions_own_names(metrics: GatewayMetrics) -> None:
    """The in-flight refusal (Limit.INFLIGHT) counts as `shed`; other limits by their value."""
    metrics.admission(Limit.INFLIGHT, "redis")
    metrics.admission(Limit.GLOBAL, "local")
    sample = "llmgw_admission_decisions_total"
    assert value(metrics, sample, decision="shed", path="redis") == 1
    assert value(metrics, sample, decision="global", path="local") == 1


def test_no_label_value_escapes_its_set(metrics: GatewayMetrics) -> None:
    """After hostile input everywhere, every exported label value is from a fixed set or `other`."""
    hostile = "visitor 203.0.113.9 says <script>"
    metrics.request_finished(hostile, hostile, 1.0)
    metrics.admission(hostile, hostile)
    metrics.pressure({hostile: 0.5}, combined=0.5, factor=1.0)
    metrics.breaker_changed(hostile, hostile)
    metrics.upstream_outage(hostile)
    metrics.upstream_failure(hostile)
    metrics.probe_snapshot(hostile, 1.0, {hostile: 1.0})
    body, _ = metrics.exposition(None)
    assert b"203.0.113.9" not in body
    assert b"<script>" not in body


def test_exemplars_carry_the_trace_id_in_openmetrics(metrics: GatewayMetrics) -> None:
    """Latency histograms carry the trace id as an exemplar in the OpenMetrics exposition."""
    exercise(metrics)
    body, content_type = metrics.exposition(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    exemplar_lines = [line for line in body.decode().splitlines() if " # {" in line]
    names = {line.split("{", 1)[0] for line in exemplar_lines}
    assert names == {
        "llmgw_request_duration_seconds_bucket",
        "llmgw_time_to_first_token_seconds_bucket",
        "llmgw_time_per_output_token_seconds_bucket",
    }
    assert all(f'# {{trace_id="{TRACE_ID}"}}' in line for line in exemplar_lines)


def test_otel_integer_trace_ids_become_hex_exemplars(metrics: GatewayMetrics) -> None:
    """An OpenTelemetry int trace id is written as the 32-hex-digit W3C form."""
    metrics.first_token(0.2, int(TRACE_ID, 16))
    body, _ = metrics.exposition(OPENMETRICS)
    assert f'# {{trace_id="{TRACE_ID}"}} 0.2'.encode() in body


@pytest.mark.parametrize("trace_id", [None, "", "0" * 32, "not-a-trace-id", TRACE_ID.upper(), 0])
def test_invalid_trace_ids_add_no_exemplar(metrics: GatewayMetrics, trace_id: str | None) -> None:
    """A missing or malformed trace id is not exported; the observation still counts."""
    metrics.first_token(0.2, trace_id)
    body, _ = metrics.exposition(OPENMETRICS)
    assert b"trace_id" not in body
    assert value(metrics, "llmgw_time_to_first_token_seconds_count") == 1


def test_text_format_has_no_exemplars(metrics: GatewayMetrics) -> None:
    """Without an OpenMetrics Accept header the exposition is text 0.0.4, without exemplars."""
    exercise(metrics)
    body, content_type = metrics.exposition("text/plain")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"trace_id" not in body


def test_time_per_output_token_divides_the_decode_time(metrics: GatewayMetrics) -> None:
    """Time after the first token over the tokens after it; one token gives no observation."""
    metrics.time_per_output_token(2.0, 21)
    metrics.time_per_output_token(5.0, 1)
    assert value(metrics, "llmgw_time_per_output_token_seconds_count") == 1
    assert value(metrics, "llmgw_time_per_output_token_seconds_sum") == pytest.approx(0.1)


def test_tokens_count_by_type(metrics: GatewayMetrics) -> None:
    """Input, output and reasoning tokens add up under their own type."""
    metrics.tokens(input_tokens=12, output_tokens=40, reasoning_tokens=8)
    metrics.tokens(input_tokens=3, output_tokens=0)
    assert value(metrics, "llmgw_tokens_total", type="input") == 15
    assert value(metrics, "llmgw_tokens_total", type="output") == 40
    assert value(metrics, "llmgw_tokens_total", type="reasoning") == 8


def test_token_budget_counts_reserved_refunded_and_spent(metrics: GatewayMetrics) -> None:
    """What admissions reserved, what their ends gave back and what they charged; an answer
    that used more than its reservation is charged it all and refunds nothing."""
    metrics.tokens_reserved(1_000)
    metrics.tokens_reserved(200)
    metrics.tokens_settled(reserved=1_000, spent=250)
    metrics.tokens_settled(reserved=200, spent=260)
    assert value(metrics, "llmgw_tokens_reserved_total") == 1_200
    assert value(metrics, "llmgw_tokens_spent_total") == 510
    assert value(metrics, "llmgw_tokens_refunded_total") == 750


def test_active_streams_go_up_and_down(metrics: GatewayMetrics) -> None:
    """Started streams raise the gauge, ended ones lower it."""
    metrics.stream_started()
    metrics.stream_started()
    metrics.stream_ended()
    assert value(metrics, "llmgw_active_streams") == 1


def test_limits_export_base_and_effective(metrics: GatewayMetrics) -> None:
    """Base and effective global limit, token limit and in-flight cap are separate series."""
    metrics.limits(
        base_global=30,
        effective_global=12,
        base_cap=4,
        effective_cap=2,
        base_global_tokens=50_000,
        effective_global_tokens=20_000,
    )
    assert value(metrics, "llmgw_global_limit", kind="base") == 30
    assert value(metrics, "llmgw_global_limit", kind="effective") == 12
    assert value(metrics, "llmgw_inflight_cap", kind="base") == 4
    assert value(metrics, "llmgw_inflight_cap", kind="effective") == 2
    assert value(metrics, "llmgw_global_token_limit", kind="base") == 50_000
    assert value(metrics, "llmgw_global_token_limit", kind="effective") == 20_000


def test_pressure_signals_follow_the_latest_snapshot(metrics: GatewayMetrics) -> None:
    """A pressure signal absent from the latest call is removed; unknown ones share `other`."""
    metrics.pressure({"gpu": 0.9, "swap": 0.4}, combined=0.9, factor=0.3)
    metrics.pressure({"gpu": 0.5, "fan": 0.2, "noise": 0.6}, combined=0.6, factor=0.8)
    assert value(metrics, "llmgw_pressure", signal="gpu") == 0.5
    assert value(metrics, "llmgw_pressure", signal="swap") is None
    assert value(metrics, "llmgw_pressure", signal="other") == 0.6
    assert value(metrics, "llmgw_pressure_combined") == 0.6
    assert value(metrics, "llmgw_governor_factor") == 0.8


def test_breaker_state_is_one_hot_and_transitions_count(metrics: GatewayMetrics) -> None:
    """Only the current breaker state is 1, and each real transition is counted once."""
    assert value(metrics, "llmgw_breaker_state", state="closed") == 1
    metrics.breaker_changed("closed", "open")
    metrics.breaker_changed("open", "half_open")
    metrics.breaker_changed("half_open", "half_open")
    states = {s: value(metrics, "llmgw_breaker_state", state=s) for s in ("closed", "open")}
    assert states == {"closed": 0, "open": 0}
    assert value(metrics, "llmgw_breaker_state", state="half_open") == 1
    transitions = "llmgw_breaker_transitions_total"
    assert value(metrics, transitions, from_state="open", to_state="half_open") == 1
    assert value(metrics, transitions, from_state="half_open", to_state="half_open") is None


def test_upstream_outage_marks_one_class_and_up(metrics: GatewayMetrics) -> None:
    """The diagnosed class is 1, the others 0; no diagnosis means up; before any, unknown."""
    up = value(metrics, "llmgw_upstream_up")
    assert up is not None
    assert math.isnan(up)
    metrics.upstream_outage("nginx_down")
    outage = {
        c: value(metrics, "llmgw_upstream_outage", **{"class": c})
        for c in ("tunnel", "nginx_down", "host_offline")
    }
    assert outage == {"tunnel": 0, "nginx_down": 1, "host_offline": 0}
    assert value(metrics, "llmgw_upstream_up") == 0
    metrics.upstream_outage(None)
    assert value(metrics, "llmgw_upstream_outage", **{"class": "nginx_down"}) == 0
    assert value(metrics, "llmgw_upstream_up") == 1


def test_upstream_outage_said_again_or_changed_shows_the_latest(metrics: GatewayMetrics) -> None:
    """The same diagnosis said again (on every answered chat) leaves the gauges as they are;
    each change, to a class, to `other` or to healthy, shows at once."""
    classes = ("tunnel", "nginx_down", "other")
    for said, shown in [
        (None, None),
        (None, None),
        ("tunnel", "tunnel"),
        ("tunnel", "tunnel"),
        ("a new class", "other"),
        ("tunnel", "tunnel"),
        (None, None),
    ]:
        metrics.upstream_outage(said)
        # (`other` has no series until a class needs it)
        outage = {c: value(metrics, "llmgw_upstream_outage", **{"class": c}) or 0 for c in classes}
        assert outage == {c: (1 if c == shown else 0) for c in classes}, said
        assert value(metrics, "llmgw_upstream_up") == (1 if shown is None else 0)


def test_redis_state_and_command_errors(metrics: GatewayMetrics) -> None:
    """Redis up and fallback gauges follow the last report; failed commands are counted."""
    metrics.redis_state(up=False, fallback_active=True)
    metrics.redis_command(0.0004, ok=True)
    metrics.redis_command(2.0, ok=False)
    assert value(metrics, "llmgw_redis_up") == 0
    assert value(metrics, "llmgw_redis_fallback_active") == 1
    assert value(metrics, "llmgw_redis_errors_total") == 1
    assert value(metrics, "llmgw_redis_command_duration_seconds_bucket", le="0.0005") == 1


def test_probe_signals_are_re_exported_and_unknown_ones_dropped(metrics: GatewayMetrics) -> None:
    """Known probe signals are re-exported per host; an unknown signal is not exported at all."""
    metrics.probe_snapshot(
        "studio", 1_700_000_000.0, {"gpu_utilization_ratio": 0.8, "fan_rpm": 2000.0}
    )
    assert value(metrics, "llmgw_probe_last_seen_timestamp_seconds", host="studio") == 1.7e9
    sample = "llmgw_probe_signal"
    assert value(metrics, sample, host="studio", signal="gpu_utilization_ratio") == 0.8
    assert value(metrics, sample, host="studio", signal="fan_rpm") is None
    assert value(metrics, sample, host="studio", signal="other") is None


def test_probe_signal_missing_from_a_snapshot_is_removed_not_zeroed(
    metrics: GatewayMetrics,
) -> None:
    """A signal that stops coming (absent, None or NaN) disappears instead of reading 0."""
    signals = {"swap_used_ratio": 0.1, "model_loaded": 1.0, "cpu_ratio": 0.3}
    metrics.probe_snapshot("studio", 1.0, signals)
    metrics.probe_snapshot("studio", 2.0, {"model_loaded": None, "cpu_ratio": math.nan})
    for signal in signals:
        assert value(metrics, "llmgw_probe_signal", host="studio", signal=signal) is None


def test_probe_gone_drops_signals_but_keeps_last_seen(metrics: GatewayMetrics) -> None:
    """An expired host loses its signals; its last-seen time stays so ProbeStale can fire."""
    metrics.probe_snapshot("studio", 5.0, {"cpu_ratio": 0.3})
    metrics.probe_gone("studio")
    assert value(metrics, "llmgw_probe_signal", host="studio", signal="cpu_ratio") is None
    assert value(metrics, "llmgw_probe_last_seen_timestamp_seconds", host="studio") == 5


def test_probe_host_names_are_bounded(metrics: GatewayMetrics) -> None:
    """Malformed host names and hosts past the cap are recorded as `other`."""
    metrics.probe_snapshot("bad host!", 1.0, {})
    for index in range(MAX_PROBE_HOSTS + 3):
        metrics.probe_snapshot(f"host-{index}", 1.0, {})
    family = next(
        f for f in metrics.registry.collect() if f.name == "llmgw_probe_last_seen_timestamp_seconds"
    )
    hosts = {sample.labels["host"] for sample in family.samples}
    assert "other" in hosts
    assert "bad host!" not in hosts
    assert len(hosts) == MAX_PROBE_HOSTS


def test_key_names_are_bounded_and_a_lane_outside_the_three_is_other(
    metrics: GatewayMetrics,
) -> None:
    """Past MAX_KEY_NAMES distinct key names the rest share `other`; a lane label is one of
    owner, member, public."""
    for number in range(MAX_KEY_NAMES + 5):
        metrics.lane_request("member", "ok", key=f"key-{number}")
    metrics.lane_request("visitor", "ok")
    keys = {
        sample.labels["key"]
        for family in metrics.registry.collect()
        if family.name == "llmgw_key_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert len(keys) == MAX_KEY_NAMES + 1
    assert "other" in keys
    assert value(metrics, "llmgw_lane_requests_total", lane="other", outcome="ok") == 1
