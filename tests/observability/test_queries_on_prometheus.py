"""A real Prometheus scrapes the real /metrics route serving a GatewayMetrics with data in it:
every dashboard query and rule evaluates without error, dashboard panels get series, and the
trace-id exemplars arrive through the OpenMetrics negotiation.

The same check against a live gateway, with metrics recorded by real chats, comes once the
gateway records its metrics; this one needs only the telemetry package."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from litestar.datastructures import State
from observability_files import DASHBOARDS_DIR, RULES, as_promql, load_dashboard, panels, rules
from posts_support import index_folder, write_posts
from promql_names import BLACKBOX, metric_names
from support import eventually, free_port, require_binary, wait_for_port

from app.posts import PostsIndex
from app.server.routes.metrics import metrics as metrics_route
from app.telemetry import GatewayMetrics
from app.telemetry.labels import OUTCOMES, PROBE_SIGNALS
from app.telemetry.rag_metrics import RAG_MODES, RAG_TOOL_OUTCOMES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SCRAPE_CONFIG = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: llmgw
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""


def recorded_metrics(posts: PostsIndex) -> GatewayMetrics:
    """A GatewayMetrics in which every method has recorded something, and that shows this
    posts index."""
    metrics = GatewayMetrics()
    for outcome in sorted(OUTCOMES):
        metrics.request_finished("/api/chat", outcome, 1.5, trace_id=TRACE_ID)
    metrics.first_token(0.8, TRACE_ID)
    metrics.time_per_output_token(3.0, 31, TRACE_ID)
    metrics.tokens(input_tokens=20, output_tokens=30, reasoning_tokens=10)
    metrics.stream_started()
    metrics.admission("admitted", "redis")
    metrics.limits(base_global=30, effective_global=20, base_cap=4, effective_cap=3)
    metrics.pressure({"gpu": 0.4, "memory": 0.1}, combined=0.4, factor=1.0)
    metrics.breaker_changed("closed", "closed")
    metrics.upstream_outage(None)
    metrics.upstream_failure("tunnel")
    metrics.redis_state(up=True, fallback_active=False)
    metrics.redis_command(0.001, ok=True)
    metrics.tokens_reserved(120)
    metrics.lane_request("owner", "ok", key="laptop")
    metrics.lane_first_token("owner", 0.4)
    metrics.lane_tokens("owner", input_tokens=20, output_tokens=30)
    metrics.lane_caps({"owner": 4, "member": 3, "public": 3})
    metrics.lane_queued({"public": 2})
    signals = dict.fromkeys(PROBE_SIGNALS, 1.0)
    metrics.probe_snapshot("studio", time.time(), signals)
    record_hosts(metrics)
    record_posts(metrics, posts)
    return metrics


def record_posts(metrics: GatewayMetrics, posts: PostsIndex) -> None:
    """Tool calls of every outcome, searches and answers in both modes, and the index."""
    for outcome in RAG_TOOL_OUTCOMES:
        metrics.rag_tool_call(outcome)
    for mode in RAG_MODES:
        metrics.rag_search(0.003, 3, 600, mode)
        metrics.rag_answer(mode, 1, sourced=True)
        metrics.rag_answer(mode, 0, sourced=False)
    metrics.posts_index(posts, max_age=86_400)


@pytest.fixture(scope="module")
def posts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostsIndex]:
    """A real posts index of the sample posts, loaded."""
    folder: Path = tmp_path_factory.mktemp("posts")
    path = index_folder(write_posts(folder / "blog"), folder / "posts.sqlite3")
    index = PostsIndex(share="file", path=path)
    assert asyncio.run(index.refresh())
    yield index
    asyncio.run(index.aclose())


def record_hosts(metrics: GatewayMetrics) -> None:
    """The single host, `home`, reported and answering, and the fallback with some of its
    day's budget spent."""
    metrics.hosts_configured(["home"])
    metrics.host_state(
        "home",
        serving=True,
        breaker="closed",
        outage=None,
        model_state="ready",
        pressure=0.4,
        factor=1.0,
        inflight_cap=3,
    )
    metrics.host_stream("home", 1)
    metrics.host_routed("home", "new")
    metrics.host_request("home", "ok")
    metrics.host_first_token("home", 0.8)
    metrics.fallback_tokens(40)
    metrics.fallback_budget(used=40, limit=200_000)
    record_energy(metrics)


def record_energy(metrics: GatewayMetrics) -> None:
    """`home` with a power source: its power, an interval's energy and one answer's share."""
    metrics.energy_configured(["home"], ["nvidia/nemotron-3-nano"])
    metrics.energy_model_answer(
        "nvidia/nemotron-3-nano", "home", input_tokens=20, output_tokens=30, ttft=0.8, streaming=2
    )
    metrics.energy_host_power("home", 42.0, 12.0)
    metrics.energy_host_joules("home", 120.0)
    metrics.energy_answer("nvidia/nemotron-3-nano", "home", 100.0, 70.0, 30)


def serve(app: Litestar) -> tuple[uvicorn.Server, int]:
    """Serve the app on a free loopback port from a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for_port(port)
    return server, port


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, posts: PostsIndex
) -> Iterator[httpx.Client]:
    """Prometheus with our rules, scraping /metrics every second; a client for its API."""
    binary = require_binary("prometheus")
    app = Litestar([metrics_route], state=State({"metrics": recorded_metrics(posts)}))
    server, gateway_port = serve(app)
    directory: Path = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(rules=RULES, port=gateway_port))
    port = free_port()
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=5) as client:
            # It listens before it is ready, answering 503 in plain text while the TSDB opens.
            ready = f"http://127.0.0.1:{port}/-/ready"
            assert eventually(lambda: client.get(ready).is_success, timeout=20), "not ready"
            assert eventually(lambda: has_rates(client), timeout=20), "no data scraped"
            yield client
    finally:
        process.terminate()
        process.wait(timeout=10)
        server.should_exit = True


def query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    """An instant query's result; fails the test on a query error."""
    body = client.get("/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def has_rates(client: httpx.Client) -> bool:
    """Enough scrapes for rate() over a minute, and the recording rules have run."""
    rate = query(client, "rate(llmgw_requests_total[1m])")
    return bool(rate) and bool(query(client, "llmgw:slo_availability_errors:ratio_rate5m"))


@pytest.mark.parametrize("path", sorted(DASHBOARDS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_dashboard_panel_gets_series(prometheus: httpx.Client, path: Path) -> None:
    """Each panel query evaluates, and returns series unless it needs the blackbox exporter."""
    empty = []
    for panel in panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            expr = as_promql(target["expr"])
            if not query(prometheus, expr) and not metric_names(expr) & BLACKBOX:
                empty.append(f"{panel['title']}: {expr}")
    assert empty == []


def test_every_rule_expression_evaluates(prometheus: httpx.Client) -> None:
    """Every recording and alerting expression runs on Prometheus without error."""
    for rule in rules():
        query(prometheus, rule["expr"])


def test_exemplars_reach_prometheus(prometheus: httpx.Client) -> None:
    """Prometheus negotiates OpenMetrics and stores the trace-id exemplars of the TTFT histogram."""
    now = time.time()
    query = "llmgw_time_to_first_token_seconds_bucket"
    params = {"query": query, "start": str(now - 60), "end": str(now)}
    body = prometheus.get("/query_exemplars", params=params).json()
    assert body["status"] == "success"
    labels = [e["labels"] for series in body["data"] for e in series["exemplars"]]
    assert {"trace_id": TRACE_ID} in labels
