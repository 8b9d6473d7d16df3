"""Fixtures for the observability tests: a fresh GatewayMetrics per test."""

from __future__ import annotations

import pytest

from app.telemetry import GatewayMetrics


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()
