"""Traces, configured by the standard OTEL_* variables: OTLP when an endpoint or exporter is
set, nothing by default (the API's no-op tracer then costs next to nothing on the hot path)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace

if TYPE_CHECKING:
    from collections.abc import Iterable

TRACER_NAME = "llmgw"
# A proxy: it hands over to the SDK's tracer once a provider is installed, so one is enough.
# (Getting it also installs the provider OTEL_PYTHON_TRACER_PROVIDER names, if one is named.)
_TRACER = trace.get_tracer(TRACER_NAME)
# What the helpers hand out while tracing is off: made once, entered by every request.
_NO_SPAN = nullcontext(trace.INVALID_SPAN)
_NOTHING = nullcontext()
# The API's global, checked once: should a release rename it, `tracing_on` takes the long way.
_HAS_PROVIDER_GLOBAL = hasattr(trace, "_TRACER_PROVIDER")


def configure_tracing() -> bool:
    """Install an SDK tracer provider when OTEL_* asks for one; return whether it did."""
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "")
    wants_otlp = exporter_name == "otlp" or (
        not exporter_name
        and bool(
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
    )
    if exporter_name in ("", "none") and not wants_otlp:
        return False
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - only when tracing
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if wants_otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "llmgw")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def tracer() -> trace.Tracer:
    """The gateway's tracer (a no-op one unless tracing was configured)."""
    return _TRACER


def tracing_on() -> bool:
    """Whether a tracer provider was installed; until then every span is the invalid one.
    Asked on every request: it reads the API's global provider, as the API's own proxy tracer
    does on every span, rather than `get_tracer_provider()`, whose environment lookup raises
    and catches a KeyError on each call while no provider is set (30 times slower)."""
    if _HAS_PROVIDER_GLOBAL:
        return trace._TRACER_PROVIDER is not None  # noqa: SLF001 - see above
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def current_span(
    name: str, kind: trace.SpanKind = trace.SpanKind.INTERNAL, *, on: bool | None = None
) -> AbstractContextManager[trace.Span]:
    """`start_as_current_span`, skipping its context-manager machinery while tracing is off
    (`on`: whether it is, when the caller already asked `tracing_on`)."""
    if not (tracing_on() if on is None else on):
        return _NO_SPAN
    return _TRACER.start_as_current_span(name, kind=kind)


def span_in_use(span: trace.Span) -> AbstractContextManager[object]:
    """`use_span` (the caller ends the span), and nothing at all for the invalid span."""
    if span is trace.INVALID_SPAN:
        return _NOTHING
    return trace.use_span(span, end_on_exit=False)


def incoming_context(raw_headers: Iterable[tuple[bytes, bytes]]) -> object:
    """The caller's trace context from its `traceparent`, if it sent one. Reads the ASGI
    headers as they are, picking only the propagator's own fields (no header map per request)."""
    if not tracing_on():
        return None
    fields = propagate.get_global_textmap().fields
    carrier: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")  # ASGI servers give header names in lower case
        if name in fields:
            carrier[name] = raw_value.decode("latin-1")
    return propagate.extract(carrier)


def outgoing_headers(span: trace.Span) -> dict[str, str]:
    """`traceparent` (and friends) for the upstream request, when a span is recording."""
    carrier: dict[str, str] = {}
    if span.is_recording():
        propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def trace_id_of(span: trace.Span) -> str | None:
    """The span's trace id as 32 hex digits, for exemplars and logs; None when not tracing."""
    if span is trace.INVALID_SPAN:
        return None
    context = span.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
