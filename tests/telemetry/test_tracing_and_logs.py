"""Traces (server, admission, GenAI client and HTTP spans, traceparent passed upstream) and
the one JSON log line per request."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from chat_client import chat
from fault_servers import answering_server
from gateway_server import running_gateway
from gateway_subprocess import gateway_process
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from posts_support import write_posts
from rag_support import index_posts
from sim_process import running_sim

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider for this process (OpenTelemetry allows one per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    exporter.shutdown()  # later tests' spans are then dropped, not kept in memory


def test_spans_of_a_chat(spans: InMemorySpanExporter, redis_url: str) -> None:
    """A chat gives a server span in the caller's trace, with admission, GenAI and HTTP spans."""
    spans.clear()
    with (
        running_sim("--decode-rate", "400") as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway,
    ):
        received = chat(gateway.url, headers={"traceparent": TRACEPARENT})
    assert received.status == 200
    by_name = {span.name: span for span in spans.get_finished_spans()}
    server = by_name["POST /api/chat"]
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert {"admission", "chat nvidia/nemotron-3-nano", "POST"} <= set(by_name)
    genai = by_name["chat nvidia/nemotron-3-nano"]
    attributes = dict(genai.attributes or {})
    assert attributes["gen_ai.request.model"] == "nvidia/nemotron-3-nano"
    assert attributes["gen_ai.response.id"] == received.events[0]["response"]["id"]
    usage = received.events[-1]["response"]["usage"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert float(str(attributes["gen_ai.response.time_to_first_chunk"])) > 0
    assert all(span.context.trace_id == server.context.trace_id for span in by_name.values())


def test_traceparent_goes_upstream(spans: InMemorySpanExporter, redis_url: str) -> None:
    """The upstream request carries a traceparent in the visitor's trace."""
    seen: list[dict[str, str]] = []
    with (
        answering_server(500, {}, b"{}", seen=seen) as upstream,
        running_gateway(upstream_url=upstream, redis_url=redis_url) as gateway,
    ):
        assert chat(gateway.url, headers={"traceparent": TRACEPARENT}).status == 502
    sent = next(h for h in seen if "traceparent" in {k.lower() for k in h})
    value = next(v for k, v in sent.items() if k.lower() == "traceparent")
    assert value.split("-")[1] == TRACE_ID


def run_logged_gateway(sim_url: str, redis_url: str, log: Path, **extra: str) -> None:
    """`llmgw serve` as a process, what it writes in `log`, through one chat and one refusal."""
    with gateway_process(
        log,
        upstream_url=sim_url,
        redis_url=redis_url,
        upstream_token="tok-secret-in-logs?",
        visitor_limit="1",
        health_interval="0",
        **extra,
    ) as gateway:
        assert chat(gateway.url, {"input": "my private words"}).status == 200
        assert chat(gateway.url, {"input": "my private words"}).status == 429


def test_one_json_line_per_request(redis_url: str, tmp_path: Path) -> None:
    """Each chat leaves one JSON line with outcome, TTFT and tokens; no secret, no content."""
    log = tmp_path / "gateway.log"
    with running_sim("--decode-rate", "400") as sim:
        run_logged_gateway(sim.url, redis_url, log)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == "llmgw.request"]
    assert [line["outcome"] for line in requests] == ["ok", "rate_limited_visitor"]
    assert requests[0]["ttft_ms"] > 0
    assert requests[0]["output_tokens"] > 0
    assert len(requests[0]["visitor"]) == 12
    assert "tok-secret-in-logs?" not in text
    assert "my private words" not in text
    assert "127.0.0.1" not in json.dumps(requests)


def test_content_is_logged_only_when_turned_on(redis_url: str, tmp_path: Path) -> None:
    """With LLMGW_LOG_CONTENT=true the visitor's words appear in the request line."""
    log = tmp_path / "gateway.log"
    with running_sim("--decode-rate", "400") as sim:
        run_logged_gateway(sim.url, redis_url, log, log_content="true")
    assert "my private words" in log.read_text()


def test_a_search_of_the_posts_is_an_execute_tool_span_in_the_chats_trace(
    spans: InMemorySpanExporter, redis_url: str, tmp_path: Path
) -> None:
    """GenAI's `execute_tool` span, for the search the gateway ran for the model's call."""
    index = tmp_path / "posts.sqlite3"
    index_posts(write_posts(tmp_path / "blog"), index)
    spans.clear()
    with (
        running_sim("--decode-rate", "400") as sim,
        running_gateway(
            upstream_url=sim.url,
            redis_url=redis_url,
            posts_index=str(index),
            posts_share="file",
            rag="tools",
        ) as gateway,
    ):
        received = chat(
            gateway.url,
            {"input": "What about Tailscale Funnel?"},
            headers={"traceparent": TRACEPARENT},
        )
    assert received.status == 200
    finished = spans.get_finished_spans()
    tool = next(span for span in finished if span.name == "execute_tool search_posts")
    attributes = dict(tool.attributes or {})
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "search_posts"
    assert str(attributes["gen_ai.tool.call.id"]).startswith("call_")
    assert int(str(attributes["llmgw.rag.passages"])) > 0
    assert f"{tool.context.trace_id:032x}" == TRACE_ID
    genai = next(span for span in finished if span.name == "chat nvidia/nemotron-3-nano")
    assert tool.parent is not None
    assert tool.parent.span_id == genai.context.span_id
    # Both rounds' requests to the model are in the chat's span.
    parents = [span.parent.span_id for span in finished if span.name == "POST" and span.parent]
    assert parents.count(genai.context.span_id) == 2
