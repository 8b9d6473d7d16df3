"""The outage diagnosis's hysteresis (issue 15): a check that times out or is told 503, as an
overloaded host's are, counts only as the LLMGW_HEALTH_FAILURES-th in a row, and so does the
probe's; a refused connection, nginx's 502 or a refused token count at once."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio

from app.admission.decision import Limits
from app.protection.breaker import BreakerConfig, BreakerState, CircuitBreaker
from app.protection.governor import GovernorConfig, PressureGovernor, TtftTracker
from app.protection.health_check import HealthReport
from app.protection.monitor import UpstreamMonitor
from app.protection.outage import OutageClass, TokenDoor, classify_response
from app.protection.probe_watch import ProbeWatcher
from app.telemetry import GatewayMetrics

TIMED_OUT = HealthReport(OutageClass.TUNNEL, busy=True)
TOLD_BUSY = HealthReport(OutageClass.MODEL_SERVER_DOWN, busy=True)
ANSWERED = HealthReport()
PROBE_HOST = "mac1"


@pytest.fixture
def breaker() -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig())


@pytest.fixture
def watcher(redis_url: str) -> ProbeWatcher:
    """A watcher that is fed snapshots by hand, as its subscription would."""
    client = redis.asyncio.Redis.from_url(redis_url)
    return ProbeWatcher(client, prefix="llmgw", stale_after=60, poll_every=60, metrics=metrics())


def metrics() -> GatewayMetrics:
    return GatewayMetrics()


def monitor_of(
    breaker: CircuitBreaker, watcher: ProbeWatcher, *, health_failures: int = 3
) -> UpstreamMonitor:
    """One host's monitor, as services.py builds it, whose checks the test hands it."""
    return UpstreamMonitor(
        httpx.AsyncClient(),
        breaker=breaker,
        watcher=watcher,
        governor=PressureGovernor(Limits(100, 10, 4), GovernorConfig()),
        ttft=TtftTracker(),
        metrics=metrics(),
        interval=5.0,
        model="m",
        probe=PROBE_HOST,
        name=PROBE_HOST,
        health_failures=health_failures,
    )


@pytest.fixture
def monitor(breaker: CircuitBreaker, watcher: ProbeWatcher) -> UpstreamMonitor:
    return monitor_of(breaker, watcher)


def apply_all(monitor: UpstreamMonitor, *reports: HealthReport) -> None:
    for report in reports:
        monitor.apply(report)


@pytest.mark.parametrize("busy", [TIMED_OUT, TOLD_BUSY], ids=["timed-out", "told-503"])
def test_two_busy_checks_in_a_row_are_no_outage(
    monitor: UpstreamMonitor, breaker: CircuitBreaker, busy: HealthReport
) -> None:
    """Checks that time out or are told 503, fewer than LLMGW_HEALTH_FAILURES in a row, leave
    the host up and its breaker closed."""
    apply_all(monitor, busy, busy)
    assert monitor.outage is None
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("busy", [TIMED_OUT, TOLD_BUSY], ids=["timed-out", "told-503"])
def test_the_third_busy_check_in_a_row_is_an_outage(
    monitor: UpstreamMonitor, breaker: CircuitBreaker, busy: HealthReport
) -> None:
    """The LLMGW_HEALTH_FAILURES-th busy check in a row calls the host down and opens its
    breaker, under the class the check found."""
    apply_all(monitor, busy, busy, busy)
    assert monitor.outage is busy.outage
    assert breaker.state is BreakerState.OPEN


def test_an_answered_check_in_between_starts_the_count_again(monitor: UpstreamMonitor) -> None:
    """A check that answered breaks the row: two more busy ones are still no outage."""
    apply_all(monitor, TIMED_OUT, TIMED_OUT, ANSWERED, TIMED_OUT, TIMED_OUT)
    assert monitor.outage is None


def test_a_chat_answered_in_between_starts_the_count_again(monitor: UpstreamMonitor) -> None:
    """A chat's first token shows the host serves: the timed-out checks before it no longer
    count toward an outage."""
    apply_all(monitor, TIMED_OUT, TIMED_OUT)
    monitor.observe(None)
    apply_all(monitor, TIMED_OUT, TIMED_OUT)
    assert monitor.outage is None


def test_one_failure_is_enough_when_so_configured(
    breaker: CircuitBreaker, watcher: ProbeWatcher
) -> None:
    """LLMGW_HEALTH_FAILURES=1: the first timed-out check calls the host down."""
    monitor = monitor_of(breaker, watcher, health_failures=1)
    monitor.apply(TIMED_OUT)
    assert monitor.outage is OutageClass.TUNNEL


@pytest.mark.parametrize(
    "outage",
    [OutageClass.TUNNEL, OutageClass.MODEL_SERVER_DOWN, OutageClass.NGINX_DOWN],
    ids=["refused-or-dns", "nginx-502-504", "bare-502"],
)
def test_a_host_that_cannot_answer_is_down_at_the_first_check(
    monitor: UpstreamMonitor, breaker: CircuitBreaker, outage: OutageClass
) -> None:
    """A refused connection, a DNS failure or a 502/504 is no busy host: down at once."""
    monitor.apply(HealthReport(outage))
    assert monitor.outage is outage
    assert breaker.state is BreakerState.OPEN


def test_a_refused_token_is_told_at_the_first_check(monitor: UpstreamMonitor) -> None:
    """A 401 raises its door's alert at once, busy checks before it or not."""
    apply_all(monitor, TIMED_OUT, HealthReport(door=TokenDoor.NGINX_LMSTUDIO))
    assert monitor.refused_doors() == [TokenDoor.NGINX_LMSTUDIO]


def test_a_busy_check_does_not_end_an_outage(monitor: UpstreamMonitor) -> None:
    """A host called down stays down while its checks only time out: that is no answer."""
    apply_all(monitor, HealthReport(OutageClass.TUNNEL), TIMED_OUT, TIMED_OUT)
    assert monitor.outage is OutageClass.TUNNEL


def probe_says(watcher: ProbeWatcher, **signals: float) -> None:
    watcher.record(PROBE_HOST, {name: str(value) for name, value in signals.items()})


@pytest.mark.parametrize("busy", [1, 2])
def test_a_probe_whose_checks_time_out_is_no_outage_at_first(
    monitor: UpstreamMonitor, watcher: ProbeWatcher, breaker: CircuitBreaker, busy: int
) -> None:
    """The probe's own check timed out (or was told 503) fewer than LLMGW_HEALTH_FAILURES
    times in a row: not down, though `model_server_up` is 0 for older gateways."""
    probe_says(watcher, model_server_up=0, model_loaded=0, model_server_busy=busy)
    monitor.tick()
    assert monitor.outage is None
    assert breaker.state is BreakerState.CLOSED


def test_a_probe_busy_three_checks_in_a_row_says_the_server_is_down(
    monitor: UpstreamMonitor, watcher: ProbeWatcher
) -> None:
    """The probe's third busy check in a row: the model server is down."""
    probe_says(watcher, model_server_up=0, model_loaded=0, model_server_busy=3)
    monitor.tick()
    assert monitor.outage is OutageClass.MODEL_SERVER_DOWN


@pytest.mark.parametrize(
    "signals",
    [{"model_server_busy": 0}, {}],
    ids=["refused", "probe-too-old-to-tell"],
)
def test_a_probe_refused_by_the_server_says_it_is_down_at_once(
    monitor: UpstreamMonitor, watcher: ProbeWatcher, signals: dict[str, float]
) -> None:
    """The probe's connection refused (or a probe that does not tell busy from down): the
    model server is down at the first snapshot."""
    probe_says(watcher, model_server_up=0, model_loaded=0, **signals)
    monitor.tick()
    assert monitor.outage is OutageClass.MODEL_SERVER_DOWN


def test_a_busy_probe_does_not_sharpen_a_tunnel_outage(
    monitor: UpstreamMonitor, watcher: ProbeWatcher
) -> None:
    """Unreachable from here while the probe only finds the server slow: still the tunnel,
    not a model server said to be down."""
    probe_says(watcher, model_server_up=0, model_loaded=0, model_server_busy=1)
    monitor.apply(HealthReport(OutageClass.TUNNEL))
    assert monitor.outage is OutageClass.TUNNEL


OVERLOADED = b'{"error":{"message":"busy","type":"server_error","code":"server_overloaded"}}'


@pytest.mark.parametrize("server", [None, "nginx"])
def test_a_chats_503_is_no_outage(server: str | None) -> None:
    """A 503 to a chat is a server shedding load (its line full, a model loading), not a
    server that is down; nginx's own 502 and 504 still are."""
    assert classify_response(503, server, OVERLOADED) is None
    assert classify_response(502, "nginx", b"<html>502</html>") is OutageClass.MODEL_SERVER_DOWN
    assert classify_response(504, "nginx", b"<html>504</html>") is OutageClass.MODEL_SERVER_DOWN
