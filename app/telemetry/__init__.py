"""The gateway's telemetry: Prometheus metrics (`GatewayMetrics`) with bounded label values."""

from app.telemetry.metrics import GatewayMetrics

__all__ = ["GatewayMetrics"]
