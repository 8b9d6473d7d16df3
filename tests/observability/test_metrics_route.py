"""GET /metrics: content negotiation between OpenMetrics (with exemplars) and text 0.0.4."""

from __future__ import annotations

import pytest
from litestar.datastructures import State
from litestar.testing import create_test_client

from app.server.routes.metrics import metrics as metrics_route
from app.telemetry import GatewayMetrics

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()


def scrape(metrics: GatewayMetrics, accept: str | None) -> tuple[int, str, str]:
    """Status, content type and body of one scrape of an app serving these metrics."""
    headers = {} if accept is None else {"Accept": accept}
    with create_test_client([metrics_route], state=State({"metrics": metrics})) as client:
        response = client.get("/metrics", headers=headers)
    return response.status_code, response.headers["content-type"], response.text


def test_prometheus_accept_header_gets_openmetrics_with_exemplars(
    metrics: GatewayMetrics,
) -> None:
    """Prometheus's own Accept header gets OpenMetrics, exemplars and the # EOF terminator."""
    metrics.first_token(0.4, TRACE_ID)
    status, content_type, body = scrape(metrics, PROMETHEUS_ACCEPT)
    assert status == 200
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert f'trace_id="{TRACE_ID}"' in body
    assert body.endswith("# EOF\n")


def test_plain_scrape_gets_text_format_without_exemplars(metrics: GatewayMetrics) -> None:
    """A scrape without Accept (curl) gets text 0.0.4, which has no exemplars."""
    metrics.first_token(0.4, TRACE_ID)
    status, content_type, body = scrape(metrics, None)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert "llmgw_time_to_first_token_seconds_count 1.0" in body
    assert "trace_id" not in body
