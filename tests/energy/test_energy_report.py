"""`llmgw report energy` on the sim's stack: two models with different power curves come out
lightest first, from the gateway's own counters and from a real Prometheus scraping it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from chat_client import chat
from energy_stack import powered_stack, scrape, total
from support import eventually, free_port, require_binary, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from gateway_server import GatewayHandle

LIGHT, HEAVY = 20.0, 90.0
CHATS = 6  # round robin: three on each host
SCRAPE_CONFIG = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: gateway
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""


def report(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`llmgw report energy ARGS` as the owner runs it, with these LLMGW_* variables."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    variables |= {f"LLMGW_{name.upper()}": value for name, value in env.items()}
    return subprocess.run(
        [sys.executable, "-m", "app", "report", "energy", *args],
        env=variables, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def two_models(redis_server: str) -> Iterator[GatewayHandle]:
    """A light and a heavy host, their chats answered and their energy settled."""
    with powered_stack(redis_server, {"light": LIGHT, "heavy": HEAVY}) as (gateway, _):
        for _ in range(CHATS):
            assert chat(gateway.url).status == 200
        settled = lambda: total(scrape(gateway), "llmgw_answer_energy_joules_count") == CHATS  # noqa: E731
        assert eventually(settled, timeout=15)
        yield gateway


def models(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)["models"]
    return rows


def test_the_lighter_model_comes_first_from_the_gateways_counters(
    two_models: GatewayHandle,
) -> None:
    """Without Prometheus the report reads the gateway's /metrics: both models, the light one
    first with less energy an answer, its cost and the fallback's for the same tokens, and a
    closing line that says the lighter one saves energy."""
    prices = {"energy_price_per_kwh": "0.5", "fallback_price_output_per_mtok": "2"}
    rows = models(report("--gateway", two_models.url, "--json", **prices))
    assert [row["model"] for row in rows] == ["light-model", "heavy-model"]
    light, heavy = rows
    assert light["answers"] == heavy["answers"] == CHATS // 2
    assert light["joules_per_answer"] < heavy["joules_per_answer"]
    assert light["energy_cost"] > 0
    assert light["fallback_cost"] > 0
    assert light["tokens_per_second"] > 0
    assert 0 < light["ttft_p50_seconds"] <= light["ttft_p95_seconds"]
    text = report("--gateway", two_models.url, **prices)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    light_line = next(i for i, line in enumerate(lines) if line.startswith("light-model"))
    heavy_line = next(i for i, line in enumerate(lines) if line.startswith("heavy-model"))
    assert light_line < heavy_line
    assert "fallback EUR" in text.stdout
    assert "A lighter model saves energy: light-model" in lines[-1]


@contextmanager
def prometheus_scraping(gateway: GatewayHandle, folder: Path) -> Iterator[str]:
    """A real Prometheus scraping the gateway every second; its URL."""
    binary = require_binary("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(port=gateway.url.rsplit(":", 1)[1]))
    port = free_port()
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}"]
    command.append(f"--web.listen-address=127.0.0.1:{port}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_same_order_from_prometheus(two_models: GatewayHandle, tmp_path: Path) -> None:
    """With LLMGW_PROMETHEUS_URL the report reads Prometheus over --since: the same models in
    the same order (more answers come in while it scrapes, and increase() counts those)."""
    with prometheus_scraping(two_models, tmp_path) as url:

        def scraped_twice() -> bool:
            query = "count_over_time(llmgw_model_answers_total[1m])"
            result = httpx.get(f"{url}/api/v1/query", params={"query": query}).json()
            return any(float(s["value"][1]) >= 3 for s in result["data"]["result"])

        assert eventually(scraped_twice, timeout=30)
        for _ in range(CHATS):
            assert chat(two_models.url).status == 200
        settled = lambda: total(scrape(two_models), "llmgw_answer_energy_joules_count") == 2 * CHATS  # noqa: E731
        assert eventually(settled, timeout=15)
        eventually(lambda: False, timeout=2.5)  # two more scrapes
        rows = models(report("--since", "10m", "--json", prometheus_url=url))
    assert [row["model"] for row in rows] == ["light-model", "heavy-model"]
    assert rows[0]["joules_per_answer"] < rows[1]["joules_per_answer"]
    assert rows[0]["answers"] >= CHATS // 2


def test_a_bad_period_is_refused() -> None:
    """--since that is not a period: exit 2 and a message that says what is expected."""
    result = report("--since", "soon")
    assert result.returncode == 2
    assert "7d, 24h or 30m" in result.stderr


def test_a_gateway_that_does_not_answer_is_said_so() -> None:
    """No gateway at the address: exit 1 and where it looked, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    result = report("--gateway", url)
    assert result.returncode == 1
    assert f"could not read {url}/metrics" in result.stderr
    assert "Traceback" not in result.stderr
