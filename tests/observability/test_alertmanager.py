"""Alertmanager: the config is valid, pages and tickets reach their receivers, and a real
Alertmanager mutes what a deeper cause explains, so one outage pages once."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from observability_files import ALERTMANAGER_CONFIG as CONFIG
from observability_files import alerts
from support import eventually, free_port, require_binary, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SEVERITIES = {rule["alert"]: rule["labels"]["severity"] for rule in alerts()}


def test_config_passes_amtool_check() -> None:
    """amtool accepts the configuration."""
    result = subprocess.run(
        [require_binary("amtool"), "check-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("alert", "severity"), SEVERITIES.items())
def test_alert_routes_to_the_receiver_of_its_severity(alert: str, severity: str) -> None:
    """Pages go to `page` and tickets to `ticket`, for every alert the rules define."""
    command = [require_binary("amtool"), "config", "routes", "test", f"--config.file={CONFIG}"]
    command += [f"--verify.receivers={severity}", f"alertname={alert}", f"severity={severity}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[httpx.Client]:
    """A private Alertmanager with our config, and a client for its API."""
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    command = [binary, f"--config.file={CONFIG}", f"--storage.path={tmp_path}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v2", timeout=5) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=10)


def fire(client: httpx.Client, alerts: list[str]) -> None:
    """Send these alerts as Prometheus would, with their severities from the rules file."""
    body: list[dict[str, Any]] = [
        {"labels": {"alertname": alert, "severity": SEVERITIES[alert]}} for alert in alerts
    ]
    client.post("/alerts", json=body).raise_for_status()


def active(client: httpx.Client) -> set[str]:
    """The alerts Alertmanager would notify about: neither inhibited nor silenced."""
    alerts: list[dict[str, Any]] = client.get("/alerts").json()
    return {a["labels"]["alertname"] for a in alerts if a["status"]["state"] == "active"}


def settles_on(client: httpx.Client, expected: set[str]) -> bool:
    """Whether the active set reaches `expected` and stays there.

    The inhibitor learns its source alerts asynchronously, so the active set only shrinks
    towards its final value; a second look after a pause catches muting too much."""
    if not eventually(lambda: active(client) == expected):
        return False
    time.sleep(0.3)
    return active(client) == expected


@pytest.mark.parametrize(
    ("firing", "pages"),
    [
        (
            [
                *("HostOffline", "TunnelDown", "NginxDown", "ModelServerDown", "ModelNotLoaded"),
                *("ProbeStale", "BreakerOpen", "AvailabilityBudgetBurnFast", "TTFTBudgetBurnFast"),
            ],
            {"HostOffline"},
        ),
        (
            ["TunnelDown", "NginxDown", "BreakerOpen", "AvailabilityBudgetBurnFast"],
            {"TunnelDown"},
        ),
        (["NginxDown", "ModelServerDown", "ModelNotLoaded", "BreakerOpen"], {"NginxDown"}),
        (["ModelServerDown", "ModelNotLoaded", "AvailabilityBudgetBurnSlow"], {"ModelServerDown"}),
        (
            ["UpstreamTokenInvalid", "BreakerOpen", "AvailabilityBudgetBurnFast"],
            {"UpstreamTokenInvalid"},
        ),
        (
            ["UpstreamModelMissing", "ModelNotLoaded", "BreakerOpen", "AvailabilityBudgetBurnFast"],
            {"UpstreamModelMissing"},
        ),
        (["ModelServerDown", "UpstreamModelMissing"], {"ModelServerDown"}),
        (["ProbeTokenInvalid", "BreakerOpen"], {"ProbeTokenInvalid", "BreakerOpen"}),
        (["RedisDown", "RedisFallbackActive"], {"RedisDown"}),
        (["RedisFallbackActive", "LaneLimitsTooTight"], {"RedisFallbackActive"}),
        (["TunnelDown", "LaneLimitsTooTight"], {"TunnelDown"}),
        (["BreakerOpen", "LaneLimitsTooTight"], {"BreakerOpen"}),
        (
            ["BreakerOpen", "AvailabilityBudgetBurnFast", "ProbeStale", "HighShedRate"],
            {"BreakerOpen", "AvailabilityBudgetBurnFast", "ProbeStale", "HighShedRate"},
        ),
        (["LaneLimitsTooTight", "HighShedRate"], {"LaneLimitsTooTight", "HighShedRate"}),
        (
            ["ModelServerDown", "AllHostsDown", "BreakerOpen", "AvailabilityBudgetBurnFast"],
            {"ModelServerDown"},
        ),
        (
            ["AllHostsDown", "BreakerOpen", "AvailabilityBudgetBurnFast", "FallbackActive"],
            {"AllHostsDown", "FallbackActive"},
        ),
        (
            ["HostDown", "FallbackActive", "FallbackBudget"],
            {"HostDown", "FallbackActive", "FallbackBudget"},
        ),
    ],
    ids=[
        *("host-offline", "tunnel", "nginx", "model-server", "token", "model-missing"),
        *("model-server-then-missing", "probe-token-explains-no-outage", "redis"),
        *("fallback-tightens-lanes", "tunnel-explains-lanes", "breaker-explains-lanes"),
        *("no-cause", "lanes-without-cause", "cause-explains-all-hosts"),
        *("all-hosts-explain-breaker", "hosts-and-fallback-tickets"),
    ],
)
def test_one_outage_notifies_once(
    alertmanager: httpx.Client, firing: list[str], pages: set[str]
) -> None:
    """The deepest cause stays active and mutes what it explains; without a cause, none is muted."""
    fire(alertmanager, firing)
    assert settles_on(alertmanager, pages), f"active: {sorted(active(alertmanager))}"
