"""The whole observability path, live: a real Prometheus scrapes a real gateway serving real chats
from the sim, the probe agent's own /metrics, and (through the blackbox exporter) the sim standing
in for the funnel, and evaluates the project's alert rules.

Visitors' chats are counted as they were answered, killing the model server pages
ModelServerDown and bringing it back resolves it, every dashboard panel gets series, and nothing
a visitor sends, nor the upstream token, reaches a scrape or a stored label."""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest
import redis
import redis.asyncio as aioredis

# PyYAML comes with Litestar but without type stubs (see observability_files).
import yaml  # type: ignore[import-untyped]
from chat_client import Received, chat
from gateway_server import GatewayHandle, running_gateway
from observability_files import (
    DASHBOARDS_DIR,
    PROMETHEUS_DIR,
    RULES,
    as_promql,
    load_dashboard,
    load_yaml,
    panels,
    queries,
    rules,
)
from posts_support import index_folder, write_posts
from promql_names import LABEL_VALUES, label_matchers
from sim_process import SimHandle, running_sim
from support import eventually, free_port, require_binary, stop_process, wait_for_port
from test_queries_on_prometheus import has_rates, query

from app.access.keys import KeyLimits, Lane
from app.access.store import KeyStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

ALERT: Final = "ModelServerDown"
# The rule file's `for: 2m` would hold the test for minutes at least: the copy Prometheus loads
# differs from infra/prometheus/rules/llmgw.rules.yml only in this alert's `for`, still longer
# than a few evaluations so that its pending state can be seen.
SHORT_FOR: Final = "4s"
# The probe's host name. as_promql fills the dashboards' $host with "studio", so the panels
# select this probe exactly as Grafana would with the host picked.
HOST: Final = "studio"
# Made up per run, so that finding one in a scrape cannot be a coincidence.
SECRET: Final = f"upstream-token-{secrets.token_hex(12)}"
KEY_SECRET: Final = f"key-secret-{secrets.token_hex(20)}"
VISITOR_IPS: Final = tuple(f"203.0.113.{10 + n}" for n in range(10))  # TEST-NET-3
THUMBMARK: Final = f"thumbmark-{secrets.token_hex(6)}"
MESSAGE: Final = f"Tell me about the weather, {secrets.token_hex(6)}"
CHATS_PER_VISITOR: Final = 4
VISITOR_LIMIT: Final = 3
# Ten visitors may take 3 chats each (30) but everyone's limit is 28: both kinds of 429.
GLOBAL_LIMIT: Final = 28
# Labels a gateway series may carry besides LABEL_VALUES' bounded ones: the scrape target's,
# histogram buckets', the probe's configured host, and the Python runtime's own collectors.
TARGET_LABELS: Final = frozenset({"__name__", "instance", "job", "le"})
RUNTIME_LABELS: Final = frozenset({"implementation", "major", "minor", "patchlevel", "version"})
RUNTIME_LABELS_GC: Final = frozenset({"generation"})
OPENMETRICS: Final = "application/openmetrics-text;version=1.0.0"


@dataclass(frozen=True)
class LiveStack:
    """What the tests look at: Prometheus's API, the gateway, the sim and the traffic sent."""

    prometheus: httpx.Client
    gateway: GatewayHandle
    sim: SimHandle
    scrape_urls: tuple[str, ...]
    answers: list[Received]  # every chat sent, by the fixture and by the tests
    owner: OwnersChat  # the one chat of the owner's tool, through /v1


def shortened_rules(path: Path) -> Path:
    """The project's rule file with only ALERT's `for` shortened, written to `path`."""
    content = load_yaml(RULES)
    matching = [
        rule for group in content["groups"] for rule in group["rules"] if rule.get("alert") == ALERT
    ]
    assert len(matching) == 1, f"{ALERT} is not in {RULES}"
    matching[0]["for"] = SHORT_FOR
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def blackbox_config(path: Path) -> Path:
    """infra/prometheus/blackbox.yml for the sim: plain HTTP, and the token it requires."""
    content = load_yaml(PROMETHEUS_DIR / "blackbox.yml")
    http = content["modules"]["http_2xx"]["http"]
    http["fail_if_not_ssl"] = False
    http["headers"] = {"Authorization": f"Bearer {SECRET}"}
    path.write_text(yaml.safe_dump(content))
    return path


def prometheus_config(directory: Path, targets: dict[str, str], rule_file: Path) -> Path:
    """infra/prometheus/prometheus.yml with this test's addresses, 1 s intervals, no Alertmanager.

    Its jobs and relabelling stay as they are: `targets` maps each job, and `blackbox`, to an
    address; the probe and funnel target files are written next to the config."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rule_file)]
    del config["alerting"]
    files = {
        "llmgw-probe": [{"targets": [targets["llmgw-probe"]], "labels": {"host": HOST}}],
        "funnel": [{"targets": [targets["funnel"]]}],
    }
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if "static_configs" in job:
            job["static_configs"] = [{"targets": [targets[name]]}]
        if "file_sd_configs" in job:
            target_file = directory / f"{name}.targets.yml"
            target_file.write_text(yaml.safe_dump(files[name]))
            job["file_sd_configs"] = [{"files": [str(target_file)]}]
        for relabel in job.get("relabel_configs", []):
            if relabel.get("replacement") == "blackbox:9115":
                relabel["replacement"] = targets["blackbox"]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def running_process(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[None]:
    """A process that serves on a loopback port, ended when the block ends."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield
    finally:
        stop_process(process)


def probe_environment(redis_url: str, model_url: str, metrics_port: int) -> dict[str, str]:
    """tests/probe_process.py's environment, with /metrics served and synthetic generations on."""
    return {
        **os.environ,
        "LLMGW_REDIS_URL": redis_url,
        "LLMGW_PROBE_MODEL_URL": model_url,
        "LLMGW_PROBE_MODEL_TOKEN": SECRET,
        "LLMGW_PROBE_INTERVAL": "0.3",
        "LLMGW_PROBE_TIMEOUT": "0.5",
        "LLMGW_PROBE_GPU": "sim",
        "LLMGW_PROBE_HOST": HOST,
        "LLMGW_PROBE_METRICS_PORT": str(metrics_port),
        "LLMGW_PROBE_SYNTHETIC_INTERVAL": "2",
        "LLMGW_PROBE_POWER_SOURCE": "sim",  # the energy row's panels (issue 20)
    }


def drive_traffic(gateway: GatewayHandle) -> tuple[Received, ...]:
    """Each visitor (an address behind the trusted proxy, and a thumbmark) chats a few times."""

    def visit(n: int) -> list[Received]:
        headers = {"X-Forwarded-For": VISITOR_IPS[n], "X-Thumbmark-Id": f"{THUMBMARK}-{n}"}
        body = {"input": MESSAGE}
        return [chat(gateway.url, body, headers=headers) for _ in range(CHATS_PER_VISITOR)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return tuple(
            answer for answers in pool.map(visit, range(len(VISITOR_IPS))) for answer in answers
        )


@dataclass(frozen=True)
class OwnersChat:
    key: str
    usage: dict[str, int]  # Chat Completions' usage chunk


def owners_chat(gateway: GatewayHandle, redis_url: str) -> OwnersChat:
    """The owner's tool chats once through /v1 with a key, so the lane and key panels have
    their series."""

    async def create() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = KeyStore(client, prefix="llmgw", secret=KEY_SECRET.encode())
            return await store.create("live-owner", Lane.OWNER, KeyLimits())
        finally:
            await client.aclose()

    key = asyncio.run(create())
    body = {
        "messages": [{"role": "user", "content": MESSAGE}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as answer:
        assert answer.status_code == 200
        frames = answer.read().decode().split("\n\n")
    assert frames[-2] == "data: [DONE]"
    usage = json.loads(frames[-3].removeprefix("data: "))["usage"]
    return OwnersChat(key, usage)


def outcome(answer: Received) -> str:
    """The outcome the gateway should have counted for what this visitor received."""
    if answer.status == 200:
        return "ok"
    if answer.status == 503 and answer.json["code"] == "breaker_open":
        return "breaker_open"
    assert answer.status == 429, (answer.status, answer.json)
    return f"rate_limited_{answer.json['limit']}"


def chats_by_outcome(prometheus: httpx.Client) -> dict[str, float]:
    """Prometheus's count of chats by outcome, leaving out the outcomes still at zero."""
    expr = 'sum by (outcome) (llmgw_requests_total{route="/api/chat"}) > 0'
    return values(prometheus, expr, "outcome")


def values(prometheus: httpx.Client, expr: str, label: str) -> dict[str, float]:
    """An instant query's values by one label."""
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in query(prometheus, expr)}


def all_targets_up(prometheus: httpx.Client) -> bool:
    """Every job has been scraped, and its last scrape succeeded."""
    targets = prometheus.get("/targets").json()["data"]["activeTargets"]
    jobs = {target["labels"]["job"] for target in targets}
    healthy = all(target["health"] == "up" for target in targets)
    return healthy and jobs == {"llmgw", "llmgw-probe", "funnel", "prometheus"}


@pytest.fixture(scope="module")
def stack(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """The sim, the probe agent, the gateway, the blackbox exporter and Prometheus, with the
    visitors' traffic sent and scraped."""
    binaries = [require_binary(name) for name in ("prometheus", "prometheus-blackbox-exporter")]
    prometheus_binary, blackbox_binary = binaries
    with redis.Redis.from_url(redis_server) as client:  # the redis_url fixture, module-wide
        client.flushdb()
    directory = tmp_path_factory.mktemp("live-stack")
    ports = {name: free_port() for name in ("llmgw-probe", "blackbox", "prometheus")}
    with ExitStack() as stack:
        sim = stack.enter_context(
            running_sim("--api-key", SECRET, "--decode-rate", "400", "--slots", "16")
        )
        probe_env = probe_environment(redis_server, sim.url, ports["llmgw-probe"])
        stack.enter_context(
            running_process([sys.executable, "-m", "probe"], ports["llmgw-probe"], probe_env)
        )
        gateway = stack.enter_context(
            running_gateway(
                upstream_url=sim.url,
                upstream_token=SECRET,
                redis_url=redis_server,
                trusted_proxies="127.0.0.1/32",
                visitor_limit=VISITOR_LIMIT,
                global_limit=GLOBAL_LIMIT,
                window_seconds=86_400,  # no window boundary in the middle of the traffic
                # Every visitor here is one network's: its chats are not a crowd to price.
                pass_network_chats=1_000_000,
                max_inflight=16,
                health_interval=0.5,
                breaker_cooldown=0.5,
                key_secret=KEY_SECRET,
                # The visitors' words are searched in the owner's posts up front, so that the
                # Posts and sources panels have searches, answers and an index to show.
                rag="context",
                posts_index=str(index_folder(write_posts(directory / "blog"), directory / "posts")),
                posts_share="file",
            )
        )
        blackbox = blackbox_config(directory / "blackbox.yml")
        stack.enter_context(
            running_process(
                [
                    blackbox_binary,
                    f"--config.file={blackbox}",
                    f"--web.listen-address=127.0.0.1:{ports['blackbox']}",
                ],
                ports["blackbox"],
            )
        )
        addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        targets = {
            **addresses,
            "llmgw": gateway.url.removeprefix("http://"),
            "funnel": f"{sim.url}/v1/models",  # the sim, in the place of the funnel's /healthz
        }
        config = prometheus_config(directory, targets, shortened_rules(directory / "rules.yml"))
        stack.enter_context(
            running_process(
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address={addresses['prometheus']}",
                    "--enable-feature=exemplar-storage",
                ],
                ports["prometheus"],
            )
        )
        base = f"http://{addresses['prometheus']}"
        prometheus = stack.enter_context(httpx.Client(base_url=f"{base}/api/v1", timeout=5))
        # It listens before it is ready, answering 503 in plain text while the TSDB opens.
        assert eventually(lambda: prometheus.get(f"{base}/-/ready").is_success, timeout=20)
        # Prometheus applies its targets some seconds after it starts: the traffic comes once it
        # has scraped the counters at zero, so that it sees them rise (rates above zero).
        assert eventually(lambda: all_targets_up(prometheus), timeout=20), "a target is down"
        assert eventually(lambda: has_rates(prometheus), timeout=15), "no rates"
        answers = drive_traffic(gateway)
        owner = owners_chat(gateway, redis_server)
        owners = 'sum(llmgw_lane_requests_total{lane="owner"})'
        assert eventually(lambda: values(prometheus, owners, "") == {"": 1}, timeout=10)
        chats = 'sum(llmgw_requests_total{route="/api/chat"})'
        assert eventually(lambda: values(prometheus, chats, "") == {"": len(answers)}, timeout=10)
        scrape_urls = (
            f"{gateway.url}/metrics",
            f"http://{addresses['llmgw-probe']}/metrics",
            f"http://{addresses['blackbox']}/probe?module=http_2xx&target={targets['funnel']}",
            f"http://{addresses['blackbox']}/metrics",
        )
        yield LiveStack(prometheus, gateway, sim, scrape_urls, list(answers), owner)


def test_prometheus_counts_what_the_visitors_received(stack: LiveStack) -> None:
    """Chats, admissions, first tokens and tokens in Prometheus match the visitors' answers."""
    got = Counter(outcome(answer) for answer in stack.answers)
    assert got["ok"] == GLOBAL_LIMIT
    assert got["rate_limited_visitor"] > 0
    assert got["rate_limited_global"] > 0
    prometheus = stack.prometheus
    assert eventually(lambda: chats_by_outcome(prometheus) == got, timeout=10), chats_by_outcome(
        prometheus
    )
    decisions = values(
        prometheus, "sum by (decision) (llmgw_admission_decisions_total) > 0", "decision"
    )
    assert decisions == {
        "admitted": got["ok"] + 1,  # and the owner's chat
        "visitor": got["rate_limited_visitor"],
        "global": got["rate_limited_global"],
    }
    first_tokens = values(prometheus, "llmgw_time_to_first_token_seconds_count", "")
    assert first_tokens == {"": got["ok"] + 1}
    owner = stack.owner.usage
    usage = Counter[str](input=owner["prompt_tokens"], output=owner["completion_tokens"])
    for answer in stack.answers:
        if answer.status == 200:
            reported = answer.events[-1]["response"]["usage"]
            usage["input"] += reported["input_tokens"]
            usage["output"] += reported["output_tokens"]
            usage["reasoning"] += reported["output_tokens_details"]["reasoning_tokens"]
    assert values(prometheus, "llmgw_tokens_total", "type") == usage
    assert values(prometheus, "llmgw_active_streams", "") == {"": 0}


def probe_signals_exported(prometheus: httpx.Client) -> set[str]:
    """The signals the probe agent exports itself on this machine (its own /metrics)."""
    names = values(prometheus, 'group by (__name__) ({job="llmgw-probe"})', "__name__")
    return {name.removeprefix("llmgw_probe_") for name in names}


def panels_without_series(prometheus: httpx.Client, path: Path) -> list[str]:
    """Panel queries that return no series with a number (a quantile of no observations is
    NaN), except those for a probe signal this machine does not have."""
    exported = probe_signals_exported(prometheus)
    empty = []
    for panel in panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            expr = as_promql(target["expr"])
            signals = {value for label, op, value in label_matchers(expr) if label == "signal"}
            # memory_pressure_level and gpu_memory_alloc_bytes are macOS's, the PSI signals
            # Linux's with /proc/pressure, swap_used_ratio needs swap, gpu_memory_* a real GPU.
            lacking = bool(signals) and signals.isdisjoint(exported)
            numbers = [float(series["value"][1]) for series in query(prometheus, expr)]
            if not any(math.isfinite(number) for number in numbers) and not lacking:
                empty.append(f"{panel['title']}: {expr}")
    return empty


@pytest.mark.parametrize("path", sorted(DASHBOARDS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_dashboard_panel_gets_live_series(stack: LiveStack, path: Path) -> None:
    """Every panel query returns a number live, except for probe signals this host lacks."""
    empty: list[str] = []

    def complete() -> bool:
        empty[:] = panels_without_series(stack.prometheus, path)
        return not empty

    # The probe's synthetic generation and the first rates may take a few scrapes.
    eventually(complete, timeout=15)
    assert empty == []


def label_values(prometheus: httpx.Client, label: str, match: str) -> set[str]:
    """Every value Prometheus stored for a label, on the series `match` selects."""
    body = prometheus.get(f"/label/{label}/values", params={"match[]": match}).json()
    assert body["status"] == "success"
    return set(body["data"])


def test_no_visitor_id_or_secret_reaches_prometheus(stack: LiveStack) -> None:
    """No scrape or stored label holds a visitor's ids or text, or the token; labels are bounded."""
    accepts = (None, OPENMETRICS)
    bodies = [
        httpx.get(url, headers={"Accept": accept} if accept else {}, timeout=10).text
        for url in stack.scrape_urls
        for accept in accepts
    ]
    prometheus = stack.prometheus
    names = prometheus.get("/labels").json()["data"]
    stored = [value for name in names for value in label_values(prometheus, name, '{job=~".+"}')]
    forbidden = (*VISITOR_IPS, THUMBMARK, MESSAGE, SECRET, KEY_SECRET, stack.owner.key)
    assert [f for f in forbidden for text in (*bodies, *stored) if f in text] == []
    scraped = '{job="llmgw",__name__!~"ALERTS|ALERTS_FOR_STATE"}'  # not the rules' own series
    gateway_names = prometheus.get("/labels", params={"match[]": scraped}).json()["data"]
    allowed_names = (
        TARGET_LABELS
        | RUNTIME_LABELS
        | RUNTIME_LABELS_GC
        | set(LABEL_VALUES)
        | {"host", "key", "model"}
    )
    assert set(gateway_names) <= allowed_names
    for name in set(gateway_names) & set(LABEL_VALUES):
        assert label_values(prometheus, name, scraped) <= LABEL_VALUES[name], name
    # the probe's host name, and the gateway's own for its one model host and the fallback
    assert label_values(prometheus, "host", scraped) == {HOST, "home", "fallback"}
    assert label_values(prometheus, "key", scraped) == {"live-owner"}  # its name, not the key


def readyz(gateway: GatewayHandle) -> dict[str, Any]:
    """The gateway's /readyz body."""
    body: dict[str, Any] = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
    return body


def alert_state(prometheus: httpx.Client, name: str) -> str | None:
    """The alert's state (pending or firing), or None when it is not active."""
    alerts = prometheus.get("/alerts").json()["data"]["alerts"]
    states = {alert["state"] for alert in alerts if alert["labels"]["alertname"] == name}
    return "firing" if "firing" in states else next(iter(states), None)


def loaded_rules(prometheus: httpx.Client) -> set[str]:
    """The names of the rules Prometheus has loaded."""
    groups = prometheus.get("/rules").json()["data"]["groups"]
    return {rule["name"] for group in groups for rule in group["rules"]}


def test_model_server_down_pages_then_resolves(stack: LiveStack) -> None:
    """The model server killed, ModelServerDown goes pending then firing; back, it resolves."""
    prometheus, gateway, sim = stack.prometheus, stack.gateway, stack.sim
    assert loaded_rules(prometheus) == {rule.get("alert") or rule["record"] for rule in rules()}
    assert eventually(lambda: readyz(gateway)["outage"] is None, timeout=10), readyz(gateway)
    assert alert_state(prometheus, ALERT) is None
    # The sim also stands in for the funnel here, so TunnelDown goes pending too (its `for` is
    # left at 3m: it cannot fire within this test); with nginx answering the funnel's /healthz
    # in production, it would not.
    sim.kill()
    assert eventually(lambda: readyz(gateway)["outage"] == "model_server_down", timeout=10), readyz(
        gateway
    )
    seen: list[str | None] = []

    def firing() -> bool:
        state = alert_state(prometheus, ALERT)
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == "firing"

    assert eventually(firing, timeout=30), seen
    assert seen[-2:] == ["pending", "firing"]
    # Both halves of its expression hold: the gateway's diagnosis, and the probe's signal as the
    # gateway re-exports it (the same as the probe agent's own /metrics says).
    outage = 'max(llmgw_upstream_outage{class="model_server_down"})'
    assert values(prometheus, outage, "") == {"": 1}
    reexported = 'min(llmgw_probe_signal{signal="model_server_up"})'
    assert values(prometheus, reexported, "") == {"": 0}
    assert values(prometheus, "llmgw_probe_model_server_up", "") == {"": 0}
    # A visitor meanwhile is turned away before Redis and the model (unless the breaker just let
    # a trial in: then everyone's limit, spent by the traffic, refuses it), and counted so.
    headers = {"X-Forwarded-For": VISITOR_IPS[0], "X-Thumbmark-Id": f"{THUMBMARK}-0"}
    stack.answers.append(chat(gateway.url, {"input": MESSAGE}, headers=headers))
    expected = Counter(outcome(answer) for answer in stack.answers)
    assert eventually(lambda: chats_by_outcome(prometheus) == expected, timeout=10)
    annotation = next(
        as_promql(expr)
        for expr in queries(load_dashboard(DASHBOARDS_DIR / "llmgw-gateway.json"))
        if "ALERTS" in expr
    )
    assert ALERT in values(prometheus, annotation, "alertname")
    sim.restart()
    assert eventually(lambda: readyz(gateway)["outage"] is None, timeout=15), readyz(gateway)
    assert eventually(lambda: alert_state(prometheus, ALERT) is None, timeout=30)
