"""GET /metrics: the gateway's Prometheus metrics, in OpenMetrics (with exemplars) when asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get

if TYPE_CHECKING:
    from app.telemetry import GatewayMetrics


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The exposition format follows the Accept header: OpenMetrics, else text 0.0.4."""
    gateway_metrics: GatewayMetrics = request.app.state.metrics
    body, content_type = gateway_metrics.exposition(request.headers.get("accept"))
    # As a header, not media_type: Litestar would append a second charset to text/plain.
    return Response(body, media_type=content_type, headers={"Content-Type": content_type})
