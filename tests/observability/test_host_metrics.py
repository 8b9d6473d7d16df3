"""GatewayMetrics' host dimension (issue 15): each home host's state, every host's streams,
routing, requests and first tokens, and the hosted fallback's tokens against its budget."""

from __future__ import annotations

import math

import pytest

from app.telemetry import GatewayMetrics
from app.telemetry.labels import BREAKER_STATES, MODEL_STATES, OUTAGE_CLASSES, ROUTE_REASONS

HOSTS = ["mac1", "linux1"]
GENAI_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0]
GENAI_TTFT += [7.5, 10.0]


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry, told the two home hosts."""
    metrics = GatewayMetrics()
    metrics.hosts_configured(HOSTS)
    return metrics


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    """A sample's value, or None when the series does not exist."""
    return metrics.registry.get_sample_value(name, labels)


def hosts_of(metrics: GatewayMetrics, family_name: str) -> set[str]:
    """The host label values a family's samples carry."""
    family = next(f for f in metrics.registry.collect() if f.name == family_name)
    return {sample.labels["host"] for sample in family.samples}


def one_hot(metrics: GatewayMetrics, name: str, label: str, host: str) -> dict[str, float | None]:
    """A one-hot gauge's series for one host, by state."""
    states = {"llmgw_host_breaker_state": BREAKER_STATES, "llmgw_host_outage": OUTAGE_CLASSES}
    return {
        state: value(metrics, name, host=host, **{label: state})
        for state in states.get(name, MODEL_STATES)
    }


def report(
    metrics: GatewayMetrics,
    host: str = "mac1",
    *,
    serving: bool = True,
    breaker: str = "closed",
    outage: str | None = None,
    model_state: str = "ready",
    pressure: float = 0.2,
    factor: float = 1.0,
) -> None:
    """A host's state as the router reports it once a second (a healthy one by default)."""
    metrics.host_state(
        host,
        serving=serving,
        breaker=breaker,
        outage=outage,
        model_state=model_state,
        pressure=pressure,
        factor=factor,
        inflight_cap=4,
    )


def test_every_host_has_its_series_from_the_start(metrics: GatewayMetrics) -> None:
    """Home hosts and the fallback have streams, routing, requests and TTFT at zero before any
    traffic; home hosts' breaker is closed, no outage, model unknown, up not yet known."""
    for host in (*HOSTS, "fallback"):
        assert value(metrics, "llmgw_host_inflight", host=host) == 0
        assert value(metrics, "llmgw_host_time_to_first_token_seconds_count", host=host) == 0
        for reason in ROUTE_REASONS:
            assert value(metrics, "llmgw_host_routed_total", host=host, reason=reason) == 0
        assert value(metrics, "llmgw_host_requests_total", host=host, outcome="ok") == 0
    for host in HOSTS:
        assert one_hot(metrics, "llmgw_host_breaker_state", "state", host) == {
            "closed": 1,
            "open": 0,
            "half_open": 0,
        }
        assert set(one_hot(metrics, "llmgw_host_outage", "class", host).values()) == {0}
        assert one_hot(metrics, "llmgw_host_model_state", "state", host)["unknown"] == 1
        up = value(metrics, "llmgw_host_up", host=host)
        assert up is not None
        assert math.isnan(up)
    assert hosts_of(metrics, "llmgw_host_up") == set(HOSTS)  # the fallback's comes when reported


def test_the_fallbacks_state_is_its_own(metrics: GatewayMetrics) -> None:
    """The fallback reported like a home host shows under `fallback`, beside the home hosts."""
    report(metrics, host="fallback", breaker="open", serving=False)
    assert value(metrics, "llmgw_host_up", host="fallback") == 0
    assert value(metrics, "llmgw_host_breaker_state", host="fallback", state="open") == 1
    assert hosts_of(metrics, "llmgw_host_up") == {*HOSTS, "fallback"}


def test_host_state_shows_up_breaker_outage_model_and_limits(metrics: GatewayMetrics) -> None:
    """A report sets the host's gauges; one-hot states have exactly the current one at 1."""
    report(metrics, breaker="half_open", model_state="waking", pressure=0.7, factor=0.5)
    assert value(metrics, "llmgw_host_up", host="mac1") == 1
    assert one_hot(metrics, "llmgw_host_breaker_state", "state", "mac1") == {
        "closed": 0,
        "open": 0,
        "half_open": 1,
    }
    models = one_hot(metrics, "llmgw_host_model_state", "state", "mac1")
    assert models == {state: (1 if state == "waking" else 0) for state in MODEL_STATES}
    assert value(metrics, "llmgw_host_pressure", host="mac1") == 0.7
    assert value(metrics, "llmgw_host_governor_factor", host="mac1") == 0.5
    assert value(metrics, "llmgw_host_inflight_cap", host="mac1") == 4
    up = value(metrics, "llmgw_host_up", host="linux1")
    assert up is not None
    assert math.isnan(up)  # the other host is its own


def test_an_outage_takes_the_host_down_and_its_end_brings_it_back(
    metrics: GatewayMetrics,
) -> None:
    """The diagnosed class is 1 and up is 0; back to healthy, every class is 0 and up is 1."""
    report(metrics, serving=False, breaker="open", outage="model_server_down")
    outage = one_hot(metrics, "llmgw_host_outage", "class", "mac1")
    assert outage == {c: (1 if c == "model_server_down" else 0) for c in OUTAGE_CLASSES}
    assert value(metrics, "llmgw_host_up", host="mac1") == 0
    assert value(metrics, "llmgw_host_breaker_state", host="mac1", state="open") == 1
    report(metrics)
    assert set(one_hot(metrics, "llmgw_host_outage", "class", "mac1").values()) == {0}
    assert value(metrics, "llmgw_host_up", host="mac1") == 1


def test_streams_routing_requests_and_first_tokens_count_per_host(
    metrics: GatewayMetrics,
) -> None:
    """Each host's in-flight streams, conversations by reason, outcomes and TTFT are its own."""
    metrics.host_stream("mac1", 1)
    metrics.host_stream("mac1", 1)
    metrics.host_stream("mac1", -1)
    metrics.host_stream("fallback", 1)
    metrics.host_routed("mac1", "new")
    metrics.host_routed("linux1", "moved")
    metrics.host_routed("fallback", "fallback")
    metrics.host_request("linux1", "upstream_error")
    metrics.host_first_token("fallback", 0.3)
    assert value(metrics, "llmgw_host_inflight", host="mac1") == 1
    assert value(metrics, "llmgw_host_inflight", host="fallback") == 1
    assert value(metrics, "llmgw_host_routed_total", host="mac1", reason="new") == 1
    assert value(metrics, "llmgw_host_routed_total", host="linux1", reason="moved") == 1
    assert value(metrics, "llmgw_host_routed_total", host="fallback", reason="fallback") == 1
    assert value(metrics, "llmgw_host_routed_total", host="linux1", reason="new") == 0
    sample = "llmgw_host_requests_total"
    assert value(metrics, sample, host="linux1", outcome="upstream_error") == 1
    ttft = "llmgw_host_time_to_first_token_seconds_bucket"
    assert value(metrics, ttft, host="fallback", le="0.25") == 0
    assert value(metrics, ttft, host="fallback", le="0.5") == 1
    assert value(metrics, ttft, host="mac1", le="+Inf") == 0


def test_host_ttft_uses_the_genai_buckets(metrics: GatewayMetrics) -> None:
    """The per-host TTFT histogram has the same buckets as the gateway's (GenAI advice)."""
    family = next(
        f for f in metrics.registry.collect() if f.name == "llmgw_host_time_to_first_token_seconds"
    )
    bounds = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
    assert sorted(b for b in bounds if math.isfinite(b)) == GENAI_TTFT


def test_unknown_hosts_reasons_and_states_become_other(metrics: GatewayMetrics) -> None:
    """A host that is not configured, a reason, outcome or state outside its set is `other`."""
    hostile = "visitor 203.0.113.9 says <script>"
    metrics.host_routed(hostile, hostile)
    metrics.host_request("mac1", hostile)
    report(metrics, host="gpu-box-9", breaker=hostile, outage=hostile, model_state=hostile)
    assert value(metrics, "llmgw_host_routed_total", host="other", reason="other") == 1
    assert value(metrics, "llmgw_host_requests_total", host="mac1", outcome="other") == 1
    assert value(metrics, "llmgw_host_up", host="other") == 1
    assert value(metrics, "llmgw_host_breaker_state", host="other", state="other") == 1
    assert value(metrics, "llmgw_host_outage", host="other", **{"class": "other"}) == 1
    assert value(metrics, "llmgw_host_model_state", host="other", state="other") == 1
    body, _ = metrics.exposition(None)
    assert b"203.0.113.9" not in body
    assert b"gpu-box-9" not in body


def test_before_hosts_are_configured_only_the_fallback_has_a_name() -> None:
    """Without hosts_configured there are no host series, and a home host's name is `other`."""
    metrics = GatewayMetrics()
    assert hosts_of(metrics, "llmgw_host_inflight") == set()
    metrics.host_stream("home", 1)
    metrics.host_stream("fallback", 1)
    assert hosts_of(metrics, "llmgw_host_inflight") == {"other", "fallback"}


def test_a_single_host_is_home() -> None:
    """The old single-host configuration's host, `home`, gets every per-host series."""
    metrics = GatewayMetrics()
    metrics.hosts_configured(["home"])
    for name in ("llmgw_host_up", "llmgw_host_pressure", "llmgw_host_inflight_cap"):
        assert hosts_of(metrics, name) == {"home"}
    assert hosts_of(metrics, "llmgw_host_inflight") == {"home", "fallback"}


def test_fallback_tokens_add_up_and_the_budget_shows_today(metrics: GatewayMetrics) -> None:
    """The fallback's tokens are counted; the budget gauges show today's use and limit."""
    assert value(metrics, "llmgw_fallback_tokens_total") == 0
    metrics.fallback_tokens(120)
    metrics.fallback_tokens(30)
    metrics.fallback_budget(used=150_000, limit=200_000)
    assert value(metrics, "llmgw_fallback_tokens_total") == 150
    assert value(metrics, "llmgw_fallback_budget_used_tokens") == 150_000
    assert value(metrics, "llmgw_fallback_budget_tokens") == 200_000


def test_no_fallback_configured_reads_zero(metrics: GatewayMetrics) -> None:
    """With no fallback (limit 0) both budget gauges read 0, as they do before any report."""
    assert value(metrics, "llmgw_fallback_budget_used_tokens") == 0
    assert value(metrics, "llmgw_fallback_budget_tokens") == 0
    metrics.fallback_budget(used=5, limit=0)
    assert value(metrics, "llmgw_fallback_budget_used_tokens") == 0
    assert value(metrics, "llmgw_fallback_budget_tokens") == 0
