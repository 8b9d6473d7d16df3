"""Where the observability files live, and reading them: rules, dashboards and their queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

# PyYAML comes with Litestar but without type stubs; types-PyYAML in the dev extra would let
# this ignore go.
import yaml  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT: Final = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR: Final = ROOT / "infra" / "prometheus"
RULES: Final = PROMETHEUS_DIR / "rules" / "llmgw.rules.yml"
ALERTMANAGER_CONFIG: Final = ROOT / "infra" / "alertmanager" / "alertmanager.yml"
DASHBOARDS_DIR: Final = ROOT / "dashboards"


def load_yaml(path: Path) -> Any:
    """A YAML file's content (safe loader)."""
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    """Every rule of the rules file, recording and alerting."""
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    """The alerting rules."""
    return [rule for rule in rules() if "alert" in rule]


# Grafana's variables, replaced by what they stand for when a query runs.
GRAFANA_VARIABLES: Final = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${host}": "studio",
    "$host": "studio",
    "${lane}": "owner",
    "$lane": "owner",
}


def load_dashboard(path: Path) -> dict[str, Any]:
    """A dashboard's JSON model."""
    model: dict[str, Any] = json.loads(path.read_text())
    return model


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and annotations."""
    exprs = [target["expr"] for panel in panels(model) for target in panel.get("targets", [])]
    exprs += [a["expr"] for a in model["annotations"]["list"] if "expr" in a]
    return exprs


def as_promql(expr: str) -> str:
    """The expression Prometheus receives once Grafana has filled in its variables."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr
