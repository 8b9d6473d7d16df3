"""The model-host dashboard's energy row: per answer and per 1,000 tokens by model, power against
load, the idle share; every panel filtered by the host selector, and saying "no power source"
where a host has no energy series."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "llmgw-model-host.json"
NO_POWER = "no power source"


def metric_names(expr: str) -> set[str]:
    """The llmgw metric names an expression reads (enough for our own queries)."""
    return set(re.findall(r"\bllmgw_[a-z_]+", expr))


def energy_row() -> list[dict[str, Any]]:
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    row = next(
        p for p in model["panels"] if p["type"] == "row" and p["title"] == "Energy per answer"
    )
    start = model["panels"].index(row) + 1
    rest: list[dict[str, Any]] = model["panels"][start:]
    end = next((i for i, p in enumerate(rest) if p["type"] == "row"), len(rest))
    return rest[:end]


def test_the_energy_row_shows_answers_tokens_power_and_idle() -> None:
    """Four panels, reading the gateway's energy series (never the probe agent's own)."""
    panels = energy_row()
    assert [p["title"] for p in panels] == [
        "Energy per answer by model",
        "Energy per 1,000 output tokens by model",
        "Power against load",
        "Idle share",
    ]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {name for expr in exprs for name in metric_names(expr)}
    assert {
        "llmgw_energy_attributed_joules_total",
        "llmgw_answer_energy_joules_count",
        "llmgw_energy_output_tokens_total",
        "llmgw_host_power_watts",
        "llmgw_host_idle_power_watts",
        "llmgw_host_energy_joules_total",
        "llmgw_host_inflight",
    } <= used
    assert all('host=~"$host|home"' in expr for expr in exprs)
    assert any("by (model)" in expr for expr in exprs)


def test_every_energy_panel_says_no_power_source_rather_than_zero() -> None:
    """A host without a power source has no series: each panel says so instead of 'No data',
    and none of its queries turns a missing series into 0 (no `or vector(0)`)."""
    for panel in energy_row():
        assert panel["fieldConfig"]["defaults"]["noValue"] == NO_POWER, panel["title"]
        assert all("vector(0)" not in t["expr"] for t in panel["targets"])
