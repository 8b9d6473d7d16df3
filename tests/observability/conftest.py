"""Fixtures for the observability tests: a fresh GatewayMetrics per test, and the repo's paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.telemetry import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()
