"""`llmgw probe` as a process: --once, settings errors, publishing, /metrics without secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
from sim_process import SimHandle, running_sim
from support import eventually, free_port, wait_for_port

from probe.cli import main
from probe.collectors.model_server import ModelServerCollector

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

    import redis

    from probe.collectors import Signals

TOKEN = "sekrit-model-token"  # the secret the tests look for in every output


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    """A simulator behind an API key: the probe is up only if it sends the token."""
    with running_sim("--api-key", TOKEN, "--decode-rate", "200") as handle:
        yield handle


def probe_env(**variables: str) -> dict[str, str]:
    """This environment without any LLMGW_* variable, plus `variables`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    return inherited | variables


def sim_env(sim: SimHandle, **variables: str) -> dict[str, str]:
    """Settings for a probe watching `sim` with the sim GPU source and the token."""
    return probe_env(
        LLMGW_PROBE_MODEL_URL=sim.url,
        LLMGW_PROBE_GPU="sim",
        LLMGW_PROBE_MODEL_TOKEN=TOKEN,
        LLMGW_PROBE_HOST="clihost",
        **variables,
    )


def run_probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m app probe *args`, as `llmgw probe` runs it."""
    command = [sys.executable, "-m", "app", "probe", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_once_prints_one_snapshot_as_json(sim: SimHandle) -> None:
    """`llmgw probe --once` prints a JSON snapshot, synthetic measurement included."""
    done = run_probe(sim_env(sim), "--once")
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    assert snapshot["host"] == "clihost"
    assert snapshot["gpu_source"] == "sim"
    assert snapshot["model_server_up"] == 1
    assert snapshot["synthetic_ttft_seconds"] > 0
    assert snapshot["unknown"] == ""
    assert TOKEN not in done.stdout + done.stderr


def test_without_the_token_the_model_server_is_up_and_refuses_it(sim: SimHandle) -> None:
    """A server refusing the probe (401) is up, in measured time, with its token door shut."""

    async def scenario() -> Signals:
        async with httpx.AsyncClient(base_url=sim.url, timeout=5.0) as http:
            return await ModelServerCollector(http).collect()

    signals = asyncio.run(scenario())
    assert (signals["model_server_up"], signals["model_token_ok"]) == (1, 0)
    assert signals["model_server_latency_seconds"] > 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLMGW_PROBE_INTERVAL", "-1"),
        ("LLMGW_PROBE_GPU", "amd"),
        ("LLMGW_PROBE_HOST", "a{b}"),
        ("LLMGW_REDIS_URL", "http://redis.example.net"),
        ("LLMGW_PROBE_METRICS_PORT", "99999"),
    ],
)
def test_invalid_setting_exits_2_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value stops the probe at start with exit code 2 and the variable's name."""
    monkeypatch.setenv(variable, value)
    assert main(["--once"]) == 2
    assert variable in capsys.readouterr().err


def test_probe_does_not_import_the_gateway_or_the_simulator() -> None:
    """The probe runs on a host with only the `probe` extra: no Litestar, app or sim."""
    check = (
        "import sys, probe.cli, probe.assembly\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'litestar', 'app', 'sim'}]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def running_probe(env: dict[str, str], log: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m probe` in the background, stopped with SIGTERM (as systemd and launchd do)."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "probe"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


def test_publishes_and_serves_metrics_without_the_token(
    sim: SimHandle, redis_url: str, redis_client: redis.Redis, tmp_path: pathlib.Path
) -> None:
    """Running: snapshots land in Redis, /metrics has the gauges, and no secret shows anywhere."""
    port = free_port()
    env = sim_env(
        sim,
        LLMGW_REDIS_URL=redis_url,
        LLMGW_PROBE_INTERVAL="0.2",
        LLMGW_PROBE_METRICS_PORT=str(port),
    )
    with running_probe(env, tmp_path / "probe.log") as process:
        wait_for_port(port)
        assert eventually(lambda: redis_client.exists("{llmgw}:probe:clihost"), timeout=15)
        assert eventually(lambda: "last_publish" in scrape(port), timeout=15)
        metrics = scrape(port)
    assert process.returncode == 0
    assert "llmgw_probe_model_server_up 1.0" in metrics
    assert "llmgw_probe_model_token_ok 1.0" in metrics
    assert 'llmgw_probe_collector_up{collector="model_server"} 1.0' in metrics
    assert "llmgw_probe_publish_errors_total 0.0" in metrics
    assert TOKEN not in metrics
    assert TOKEN not in (tmp_path / "probe.log").read_text()


def scrape(port: int) -> str:
    """The probe's /metrics."""
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_without_redis_it_only_serves_metrics(sim: SimHandle, tmp_path: pathlib.Path) -> None:
    """No LLMGW_REDIS_URL: a log line says so, and /metrics still has the signals."""
    port = free_port()
    env = sim_env(sim, LLMGW_PROBE_INTERVAL="0.2", LLMGW_PROBE_METRICS_PORT=str(port))
    with running_probe(env, tmp_path / "probe.log"):
        wait_for_port(port)
        assert eventually(lambda: "llmgw_probe_model_server_up 1.0" in scrape(port), timeout=15)
        metrics = scrape(port)
    assert "last_publish" not in metrics
    assert "LLMGW_REDIS_URL is not set" in (tmp_path / "probe.log").read_text()
