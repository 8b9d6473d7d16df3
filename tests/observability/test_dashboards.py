"""Grafana dashboards: they load, refer to the provisioned datasource only, and every query parses
(promtool) and names only metrics and label values that exist."""

from __future__ import annotations

import json
import re
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from observability_files import (
    DASHBOARDS_DIR,
    as_promql,
    load_dashboard,
    load_yaml,
    panels,
    queries,
    rules,
)
from promql_names import (
    BLACKBOX,
    PROBE_AGENT,
    PROMETHEUS,
    metric_names,
    registry_names,
    unknown_label_values,
)
from support import require_binary

from app.telemetry import GatewayMetrics
from app.telemetry.labels import LANES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


DATASOURCE_UID = "llmgw-prometheus"
ALLOWED_DATASOURCES = [
    {"type": "prometheus", "uid": DATASOURCE_UID},
    {"type": "prometheus", "uid": "${datasource}"},
    {"type": "grafana", "uid": "-- Grafana --"},  # the built-in annotations
]
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
LABEL_VALUES_QUERY = re.compile(r"label_values\((?P<metric>[a-zA-Z_:][\w:]*)\s*,\s*\w+\)")


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()


def variable_metrics(model: dict[str, Any]) -> set[str]:
    """Metrics the template variables query with label_values(metric, label)."""
    names = set()
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES_QUERY.fullmatch(variable["query"]["query"])
            assert match, variable["query"]
            names.add(match["metric"])
    return names


def datasources(model: dict[str, Any]) -> Iterator[object]:
    """Every datasource reference: panels, targets, annotations and variables."""
    for panel in panels(model):
        if panel["type"] != "row":
            yield panel.get("datasource")
        for target in panel.get("targets", []):
            yield target.get("datasource", panel.get("datasource"))
    for annotation in model["annotations"]["list"]:
        yield annotation["datasource"]
    for variable in model["templating"]["list"]:
        if "datasource" in variable:
            yield variable["datasource"]


def test_both_dashboards_exist() -> None:
    """There is a gateway and a model-host dashboard."""
    titles = {load_dashboard(path)["title"] for path in DASHBOARDS}
    assert titles == {"llmgw / gateway", "llmgw / model host"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_is_provisionable(path: Path) -> None:
    """A fixed uid, no import-time __inputs, unique panel ids, panels within the 24-column grid."""
    model = load_dashboard(path)
    assert re.fullmatch(r"llmgw-[a-z-]+", model["uid"])
    assert "__inputs" not in model
    assert "__requires" not in model
    ids = [panel["id"] for panel in panels(model)]
    assert len(ids) == len(set(ids))
    for panel in panels(model):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_uses_only_the_provisioned_datasource(path: Path) -> None:
    """Every reference is the fixed uid or the `datasource` variable, which defaults to it."""
    model = load_dashboard(path)
    assert all(reference in ALLOWED_DATASOURCES for reference in datasources(model))
    variable = next(v for v in model["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == DATASOURCE_UID


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_queries_parse(path: Path, tmp_path: Path) -> None:
    """promtool parses every query (each as a recording rule, variables filled in)."""
    promtool = require_binary("promtool")
    exprs = [as_promql(expr) for expr in queries(load_dashboard(path))]
    rules_file = tmp_path / "dashboard.rules.yml"
    records = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    rules_file.write_text(json.dumps({"groups": [{"name": path.stem, "rules": records}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_queries_use_only_metrics_that_exist(path: Path, metrics: GatewayMetrics) -> None:
    """Every metric is one GatewayMetrics defines, a recording rule, blackbox's or Prometheus's."""
    model = load_dashboard(path)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = registry_names(metrics.registry) | recorded | BLACKBOX | PROMETHEUS
    used = {name for expr in queries(model) for name in metric_names(expr)}
    assert (used | variable_metrics(model)) - known == set()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_queries_match_only_label_values_that_exist(path: Path) -> None:
    """Label matchers use values the gateway can emit (outcomes, classes, signals, states)."""
    assert [
        bad for expr in queries(load_dashboard(path)) for bad in unknown_label_values(expr)
    ] == []


def test_model_host_dashboard_needs_only_the_gateway_scraped() -> None:
    """It reads the gateway's re-exported probe signals, never the probe agent's own metrics."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-model-host.json")
    used = {name for expr in queries(model) for name in metric_names(expr)}
    assert used & PROBE_AGENT == set()
    assert "llmgw_probe_signal" in used
    assert "llmgw_probe_last_seen_timestamp_seconds" in used
    host = next(v for v in model["templating"]["list"] if v["name"] == "host")
    assert host["query"]["query"] == "label_values(llmgw_probe_last_seen_timestamp_seconds, host)"


def test_provisioning_points_at_the_fixed_uid_and_the_dashboards() -> None:
    """The provisioned datasource has the uid the dashboards use; the provider reads files."""
    datasources_file = load_yaml(DASHBOARDS_DIR / "provisioning" / "datasources.yml")
    (datasource,) = datasources_file["datasources"]
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    (provider,) = load_yaml(DASHBOARDS_DIR / "provisioning" / "dashboards.yml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def test_gateway_dashboard_shows_each_diagnosis_of_the_model_path() -> None:
    """The outage class, the model's state and the refused token's door each have a panel."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json")
    used = {name for expr in queries(model) for name in metric_names(expr)}
    diagnoses = {"llmgw_upstream_outage", "llmgw_model_state", "llmgw_upstream_token_invalid"}
    assert diagnoses <= used


def test_gateway_dashboard_repeats_a_row_for_each_lane() -> None:
    """One row per lane (a `lane` variable over LANES) with its requests, places, TTFT, tokens."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json")
    lane = next(v for v in model["templating"]["list"] if v["name"] == "lane")
    assert lane["query"].split(",") == list(LANES)
    assert lane["includeAll"]
    row = next(panel for panel in model["panels"] if panel.get("repeat") == "lane")
    start = model["panels"].index(row) + 1
    end = next(i for i, p in enumerate(model["panels"][start:], start) if p["type"] == "row")
    lane_panels = model["panels"][start:end]
    assert all(any('lane="$lane"' in t["expr"] for t in p["targets"]) for p in lane_panels)
    used = {
        name for panel in lane_panels for t in panel["targets"] for name in metric_names(t["expr"])
    }
    assert used == {
        "llmgw_lane_requests_total",
        "llmgw_lane_queued",
        "llmgw_lane_inflight",
        "llmgw_lane_inflight_cap",
        "llmgw_lane_time_to_first_token_seconds_bucket",
        "llmgw_lane_tokens_total",
    }


def test_gateway_dashboard_shows_the_token_budget_and_keys() -> None:
    """Reserved, refunded and spent tokens, and requests by key, each have a query."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json")
    used = {name for expr in queries(model) for name in metric_names(expr)}
    budget = {"llmgw_tokens_reserved_total", "llmgw_tokens_refunded_total"}
    assert budget | {"llmgw_tokens_spent_total", "llmgw_key_requests_total"} <= used


def test_model_host_dashboard_filters_every_panel_by_the_host_selector() -> None:
    """Each query picks the selected hosts: the probe's by its name, the gateway's per-host
    series by the gateway's name for the host (or `home`, the single host of the old setup)."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-model-host.json")
    exprs = queries(model)
    assert [expr for expr in exprs if "$host" not in expr and "ALERTS" not in expr] == []
    used = {name for expr in exprs for name in metric_names(expr)}
    assert {"llmgw_host_pressure", "llmgw_host_time_to_first_token_seconds_bucket"} <= used


def test_gateway_dashboard_has_a_row_of_hosts() -> None:
    """A Hosts row shows each host's up, breaker, outage, pressure, in-flight against cap, TTFT
    and routing, and the fallback's tokens against its budget."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json")
    row = next(p for p in model["panels"] if p["type"] == "row" and p["title"] == "Hosts")
    start = model["panels"].index(row) + 1
    end = next(i for i, p in enumerate(model["panels"][start:], start) if p["type"] == "row")
    used = {
        name
        for panel in model["panels"][start:end]
        for target in panel["targets"]
        for name in metric_names(target["expr"])
    }
    assert used == {
        "llmgw_host_up",
        "llmgw_host_breaker_state",
        "llmgw_host_outage",
        "llmgw_host_pressure",
        "llmgw_host_governor_factor",
        "llmgw_host_inflight",
        "llmgw_host_inflight_cap",
        "llmgw_host_time_to_first_token_seconds_bucket",
        "llmgw_host_routed_total",
        "llmgw_fallback_tokens_total",
        "llmgw_fallback_budget_used_tokens",
        "llmgw_fallback_budget_tokens",
    }


def test_gateway_dashboard_has_a_row_of_visitor_passes() -> None:
    """A Visitor passes row shows challenges by steps, passes granted, refusals by check and
    reason, the difficulty now and whether a pass is required now."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json")
    row = next(p for p in model["panels"] if p["type"] == "row" and p["title"] == "Visitor passes")
    start = model["panels"].index(row) + 1
    end = next(i for i, p in enumerate(model["panels"][start:], start) if p["type"] == "row")
    exprs = [target["expr"] for panel in model["panels"][start:end] for target in panel["targets"]]
    assert {name for expr in exprs for name in metric_names(expr)} == {
        "llmgw_pass_challenges_total",
        "llmgw_pass_granted_total",
        "llmgw_pass_refused_total",
        "llmgw_pass_difficulty_steps",
        "llmgw_pass_required",
    }
    assert any("by (steps)" in expr for expr in exprs)
    assert any("by (check, reason)" in expr for expr in exprs)


def test_gateway_dashboard_has_a_row_of_posts_and_sources() -> None:
    """A Posts and sources row shows tool calls by outcome, search latency p50 and p99,
    passages and tokens added, rounds per answer, the share of answers with sources, and the
    index's size and age against its max age."""
    model = load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json")
    row = next(
        p for p in model["panels"] if p["type"] == "row" and p["title"] == "Posts and sources"
    )
    start = model["panels"].index(row) + 1
    end = next(i for i, p in enumerate(model["panels"][start:], start) if p["type"] == "row")
    exprs = [target["expr"] for panel in model["panels"][start:end] for target in panel["targets"]]
    assert {name for expr in exprs for name in metric_names(expr)} == {
        "llmgw_rag_tool_calls_total",
        "llmgw_rag_search_seconds_bucket",
        "llmgw_rag_passages_added_total",
        "llmgw_rag_tokens_added_total",
        "llmgw_rag_rounds_sum",
        "llmgw_rag_rounds_count",
        "llmgw_rag_rounds_bucket",
        "llmgw_rag_answers_total",
        "llmgw_posts_index_passages",
        "llmgw_posts_index_posts",
        "llmgw_posts_index_loaded",
        "llmgw_posts_index_age_seconds",
        "llmgw_posts_index_max_age_seconds",
    }
    assert any("by (outcome)" in expr for expr in exprs)
    assert any(expr.startswith("histogram_quantile(0.5,") for expr in exprs)
    assert any(expr.startswith("histogram_quantile(0.99,") for expr in exprs)
    assert any('sources="cited"' in expr for expr in exprs)
