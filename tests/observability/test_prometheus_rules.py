"""Prometheus: the config and rules pass promtool, every alert fires and stays quiet in its own
promtool test, and every alert is documented, routed by severity and has a runbook section."""

from __future__ import annotations

import re
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from observability_files import PROMETHEUS_DIR, RULES, alerts, load_yaml, rules
from promql_names import (
    BLACKBOX,
    PROMETHEUS,
    metric_names,
    registry_names,
    unknown_label_values,
)
from support import require_binary

from app.telemetry import GatewayMetrics

if TYPE_CHECKING:
    from pathlib import Path


UNIT_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
RUNBOOK = PROMETHEUS_DIR / "RUNBOOK.md"


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()


def run(*command: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output as text; the timeout only stops a hung one."""
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snake_case(name: str) -> str:
    """TTFTBudgetBurnFast -> ttft_budget_burn_fast."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def runbook_anchors() -> set[str]:
    """The anchors GitHub gives RUNBOOK.md's second-level headings."""
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_rules_pass_promtool_check() -> None:
    """promtool parses every rule and finds nothing wrong."""
    result = run(require_binary("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_passes_promtool_check() -> None:
    """prometheus.yml is valid, and its rule and target files resolve next to it."""
    result = run(require_binary("promtool"), "check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_config_scrapes_gateway_probe_and_funnel() -> None:
    """The three jobs exist; the funnel is probed through the blackbox exporter's http_2xx."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["llmgw"]["static_configs"][0]["targets"] == ["gateway:8000"]
    assert "file_sd_configs" in jobs["llmgw-probe"]
    funnel = jobs["funnel"]
    assert funnel["params"] == {"module": ["http_2xx"]}
    assert {"target_label": "__address__", "replacement": "blackbox:9115"} in funnel[
        "relabel_configs"
    ]
    targets = load_yaml(PROMETHEUS_DIR / "targets" / "funnel.yml")
    assert all(t.endswith("/healthz") for group in targets for t in group["targets"])


def test_blackbox_config_is_valid() -> None:
    """The blackbox exporter accepts its config (http_2xx, TLS required)."""
    binary = require_binary("prometheus-blackbox-exporter")
    result = run(binary, "--config.check", f"--config.file={PROMETHEUS_DIR / 'blackbox.yml'}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda path: path.name)
def test_alert_unit_test_passes(unit_test: Path) -> None:
    """Each alert's promtool test: it fires when it should and stays quiet when it should not."""
    # A week of series evaluated every 15 minutes takes promtool seconds, more on a loaded CI.
    result = run(require_binary("promtool"), "test", "rules", unit_test, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alerts()])
def test_every_alert_has_a_test_that_fires_and_one_that_stays_quiet(alert: str) -> None:
    """tests/<alert>.test.yml expects the alert firing at some time and silent at another."""
    unit_test = PROMETHEUS_DIR / "tests" / f"{snake_case(alert)}.test.yml"
    assert unit_test.exists(), f"no {unit_test.name}"
    checks = [
        check
        for case in load_yaml(unit_test)["tests"]
        for check in case.get("alert_rule_test", [])
        if check["alertname"] == alert
    ]
    assert any(check["exp_alerts"] for check in checks), "never expected to fire"
    assert any(not check["exp_alerts"] for check in checks), "never expected to stay quiet"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_is_documented(rule: dict[str, Any]) -> None:
    """Severity page or ticket; a summary, a description and a runbook section that exists."""
    assert rule["labels"]["severity"] in {"page", "ticket"}
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    path, _, anchor = annotations["runbook_url"].partition("#")
    assert path == "infra/prometheus/RUNBOOK.md"
    assert anchor in runbook_anchors()


def test_rules_use_only_metrics_that_exist(metrics: GatewayMetrics) -> None:
    """Every name in the rules is a GatewayMetrics, blackbox, Prometheus or recorded metric."""
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = registry_names(metrics.registry) | BLACKBOX | PROMETHEUS | recorded
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert used - known == set()


def test_rules_match_only_label_values_that_exist() -> None:
    """Label matchers in the rules use values the gateway can emit (no `class="tunel"`)."""
    assert [bad for rule in rules() for bad in unknown_label_values(rule["expr"])] == []


def test_gateway_exposition_passes_promtool_lint(metrics: GatewayMetrics) -> None:
    """`promtool check metrics` finds no naming or type problem in the gateway's exposition."""
    promtool = require_binary("promtool")
    metrics.request_finished("/api/chat", "ok", 1.0)
    metrics.probe_snapshot("studio", 1.0, {"cpu_ratio": 0.1})
    body, _ = metrics.exposition(None)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
