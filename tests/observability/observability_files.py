"""Where the observability files live, and reading them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

# PyYAML comes with Litestar but without type stubs; types-PyYAML in the dev extra would let
# this ignore go.
import yaml  # type: ignore[import-untyped]

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
