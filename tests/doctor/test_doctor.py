"""`llmgw doctor` as an operator runs it: a real process, real Redis, the simulated LM Studio,
real nginx and real faults; the first failing hop and its advice, and never a secret printed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from doctor_process import assert_fails_first_at, doctor
from fault_servers import answering_server
from probe_process import running_probe
from sim_process import SimHandle, running_sim
from support import eventually, free_port, require_binary, self_signed_certificate, wait_for_port

from app.doctor.run import HOPS

# infra/home's nginx, run by tests/infra's helper: that folder is no package, so pytest puts it
# on sys.path only for the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
from home_nginx import running_nginx

if TYPE_CHECKING:
    from asyncio import StreamReader, StreamWriter
    from collections.abc import Awaitable, Callable, Iterator

    import redis

TOKEN = secrets.token_hex(32)
WRONG_TOKEN = secrets.token_hex(32)


@pytest.fixture(scope="module")
def redis_password() -> str:
    return secrets.token_hex(24)


@pytest.fixture(scope="module")
def password_redis(redis_password: str) -> Iterator[int]:
    """The port of a private redis-server with `requirepass` (given on stdin, not argv)."""
    binary = require_binary("redis-server")
    port = free_port()
    command = [binary, "-", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert process.stdin is not None
    process.stdin.write(f"requirepass {redis_password}\n".encode())
    process.stdin.close()
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim("--decode-rate", "100") as handle:
        yield handle


@pytest.fixture
def probe(redis_url: str, redis_client: redis.Redis, sim: SimHandle) -> Iterator[None]:
    """A real probe agent publishing to Redis about the sim."""
    with running_probe(redis_url, sim.url):
        assert eventually(lambda: redis_client.keys("{llmgw}:probe:*"), timeout=15)
        yield


def test_every_hop_passes_against_redis_and_the_sim(
    redis_url: str, sim: SimHandle, probe: None
) -> None:
    """Redis, the sim and a live probe: every hop is ok and the exit code is 0."""
    diagnosis = doctor(redis_url=redis_url, upstream_url=sim.url)
    assert diagnosis.code == 0, diagnosis.output
    assert set(diagnosis.results().values()) == {"ok"}, diagnosis.output
    assert list(diagnosis.rows) == ["config", *(hop for hop in HOPS if hop != "tls")]
    assert "first token after" in diagnosis.rows["generation"].detail
    assert "test-host" in diagnosis.rows["probe"].detail
    assert "in parallel" in diagnosis.rows["concurrency"].detail
    assert "all 12 hops passed." in diagnosis.output


def test_a_missing_admission_script_is_loaded_and_said(
    redis_url: str, redis_client: redis.Redis, sim: SimHandle
) -> None:
    """A Redis without the admission script gets it, and the table says it was missing."""
    redis_client.script_flush()
    first = doctor(redis_url=redis_url, upstream_url=sim.url)
    second = doctor(redis_url=redis_url, upstream_url=sim.url)
    assert "was missing" in first.rows["admit-script"].detail
    assert second.rows["admit-script"].detail.startswith("loaded (sha")


def test_every_hop_passes_through_the_home_nginx(
    redis_url: str, sim: SimHandle, probe: None, tmp_path: Path
) -> None:
    """Through infra/home's nginx with a listed token: /healthz answers without the token, the
    token is let in and a request without it is refused; the token is never printed."""
    binary = require_binary("nginx")
    upstream = f"127.0.0.1:{sim.port}"
    with running_nginx(binary, tmp_path, upstream=upstream, tokens=[TOKEN], origins=[]) as nginx:
        diagnosis = doctor(TOKEN, redis_url=redis_url, upstream_url=nginx.url, upstream_token=TOKEN)
    assert diagnosis.code == 0, diagnosis.output
    assert set(diagnosis.results().values()) == {"ok"}, diagnosis.output
    assert "answered 200 without a token" in diagnosis.rows["nginx"].detail
    assert "refused without it (401)" in diagnosis.rows["token"].detail


def test_unresolvable_host_fails_at_dns(redis_url: str) -> None:
    """A host name that does not resolve (.invalid never does) fails the DNS hop."""
    diagnosis = doctor(redis_url=redis_url, upstream_url="https://llmgw-doctor.invalid")
    row = assert_fails_first_at(diagnosis, "dns", "LLMGW_UPSTREAM_URL")
    assert row.detail.startswith("llmgw-doctor.invalid does not resolve")


def test_refused_port_fails_at_the_tunnel(redis_url: str) -> None:
    """Nothing listens at the upstream: the tunnel hop fails first and points at Tailscale."""
    diagnosis = doctor(redis_url=redis_url, upstream_url=f"http://127.0.0.1:{free_port()}")
    row = assert_fails_first_at(diagnosis, "tunnel", "tailscale funnel status")
    assert row.detail.endswith("(Connection refused)")


def test_bare_502_fails_at_nginx(redis_url: str) -> None:
    """The tunnel answering 502 without `Server: nginx`: nginx is down on the model host."""
    with answering_server(502, {}, b"Bad Gateway") as upstream:
        diagnosis = doctor(redis_url=redis_url, upstream_url=upstream)
    row = assert_fails_first_at(diagnosis, "nginx", "docker compose ps nginx")
    assert "without `Server: nginx`" in row.detail


def test_model_server_down_behind_nginx_fails_at_models(redis_url: str, tmp_path: Path) -> None:
    """nginx up, LM Studio gone: nginx's own 502 on /v1/models is a model server outage."""
    binary = require_binary("nginx")
    upstream = f"127.0.0.1:{free_port()}"
    with running_nginx(binary, tmp_path, upstream=upstream, tokens=[TOKEN], origins=[]) as nginx:
        diagnosis = doctor(TOKEN, redis_url=redis_url, upstream_url=nginx.url, upstream_token=TOKEN)
    row = assert_fails_first_at(diagnosis, "models", "LLMGW_LMSTUDIO_ADDRESS")
    assert "502 (Server: nginx): model_server_down" in row.detail


def test_unreachable_redis_fails_at_redis(redis_password: str) -> None:
    """Nothing listens at LLMGW_REDIS_URL: the redis hop fails, the password shown as ***."""
    url = f"redis://:{redis_password}@127.0.0.1:{free_port()}/0"
    diagnosis = doctor(redis_password, redis_url=url)
    row = assert_fails_first_at(diagnosis, "redis", "redis-server running")
    assert "unreachable" in row.detail
    assert "redis://:***@127.0.0.1" in row.detail


def test_wrong_redis_password_fails_at_redis(password_redis: int, redis_password: str) -> None:
    """A password Redis refuses is told apart from an unreachable Redis."""
    wrong = secrets.token_hex(24)
    url = f"redis://:{wrong}@127.0.0.1:{password_redis}/0"
    diagnosis = doctor(redis_password, wrong, redis_url=url)
    row = assert_fails_first_at(diagnosis, "redis", "requirepass")
    assert "refused the password" in row.detail


def test_invalid_config_fails_first_and_names_the_variable() -> None:
    """An invalid value fails the config hop, names the variable, and skips every other hop."""
    diagnosis = doctor(upstream_token=TOKEN, global_limit="0")
    row = assert_fails_first_at(diagnosis, "config", "README.md")
    assert "LLMGW_GLOBAL_LIMIT" in row.detail
    assert list(diagnosis.rows) == ["config", *HOPS]


def test_stale_probe_snapshot_fails_at_probe(
    redis_url: str, redis_client: redis.Redis, sim: SimHandle
) -> None:
    """A probe hash whose `ts` is two minutes old fails the probe hop: the probe stopped."""
    redis_client.hset("{llmgw}:probe:mac-studio", mapping={"ts": time.time() - 120, "cpu": 0.1})
    diagnosis = doctor(redis_url=redis_url, upstream_url=sim.url)
    row = assert_fails_first_at(diagnosis, "probe", "llmgw probe")
    assert row.detail.startswith("stale: mac-studio 12")


def test_missing_probe_fails_at_probe(redis_url: str, sim: SimHandle) -> None:
    """No probe snapshot at all: start `llmgw probe` on the model host."""
    diagnosis = doctor(redis_url=redis_url, upstream_url=sim.url)
    row = assert_fails_first_at(diagnosis, "probe", "start `llmgw probe` on the model host")
    assert "{llmgw}:probe:*" in row.detail


# --- TLS: a relay with its own certificate in front of the sim --------------------------------


@contextlib.contextmanager
def tls_relay(target_port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS server on a free port that relays every connection to the target, as Tailscale
    Funnel ends TLS in front of nginx."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        asyncio.start_server(relay_to(target_port), "127.0.0.1", 0, ssl=context)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def relay_to(target_port: int) -> Callable[[StreamReader, StreamWriter], Awaitable[None]]:
    async def pipe(reader: StreamReader, writer: StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: StreamReader, writer: StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return handle


def test_untrusted_certificate_fails_at_tls(redis_url: str, sim: SimHandle, tmp_path: Path) -> None:
    """https with a certificate nobody trusts: the TLS hop fails with the verifier's reason."""
    cert, key = self_signed_certificate(tmp_path, days=90)
    with tls_relay(sim.port, cert, key) as port:
        diagnosis = doctor(redis_url=redis_url, upstream_url=f"https://localhost:{port}")
    row = assert_fails_first_at(diagnosis, "tls", "ts.net")
    assert "self-signed" in row.detail or "self signed" in row.detail


def test_trusted_certificate_near_expiry_passes_with_a_warning(
    redis_url: str, sim: SimHandle, probe: None, tmp_path: Path
) -> None:
    """A trusted certificate (SSL_CERT_FILE, as the gateway's client reads it) that expires in
    days: the TLS hop warns with the days left, and every hop after it runs over TLS."""
    cert, key = self_signed_certificate(tmp_path, days=5)
    with tls_relay(sim.port, cert, key) as port:
        url = f"https://localhost:{port}"
        diagnosis = doctor(
            redis_url=redis_url, upstream_url=url, extra_env={"SSL_CERT_FILE": str(cert)}
        )
    assert diagnosis.code == 0, diagnosis.output
    assert diagnosis.rows["tls"].result == "warn"
    assert "valid for 4 more days" in diagnosis.rows["tls"].detail
    assert "localhost → " in diagnosis.rows["dns"].detail
    assert diagnosis.rows["generation"].result == "ok"
