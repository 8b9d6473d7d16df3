"""The hot path's pipelined line to Redis (`redis_wire`) on a real redis-server: replies
matched to their calls under concurrency on one connection, late and cancelled replies never
given to the wrong call, a lost connection replaced, and the URL's password, database and Unix
socket honoured; a fake server covers what Redis itself never sends."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from typing import TYPE_CHECKING, Any

import fakeredis
import hiredis
import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from support import (
    SLOW_SCRIPT,
    free_port,
    require_binary,
    self_signed_certificate,
    start_redis,
    stop_process,
    wait_for_port,
)

from app.admission.decision import Limits
from app.admission.redis_admitter import RedisAdmitter
from app.admission.redis_script import LuaScript
from app.admission.redis_wire import RedisWire

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

NAME = "wire-under-test"
ECHO = "return {KEYS[1], ARGV[1]}"


def run(scenario: Callable[[], Awaitable[object]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def client(url: str, **settings: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, client_name=NAME, **settings)


def wire_of(redis: aioredis.Redis) -> RedisWire:
    wire = RedisWire.of(redis)
    assert wire is not None
    return wire


async def wire_connections(redis: aioredis.Redis) -> list[int]:
    """The ids of the server's connections opened by the wire under test (not the one of
    redis-py's pool asking)."""
    listing = await redis.client_list()
    return sorted(
        int(entry["id"])
        for entry in listing
        if entry["name"] == NAME and not entry["cmd"].startswith("client")
    )


async def echo(redis: aioredis.Redis, wire: RedisWire, key: str, value: str) -> Any:
    return await LuaScript(redis, ECHO, wire)([key], [value])


async def failure_of_a_call(url: str) -> Exception | None:
    """What one call through a new wire to `url` raised (None: it was answered)."""
    redis = client(url)
    wire = wire_of(redis)
    try:
        await echo(redis, wire, "k", "v")
    except Exception as exc:
        return exc
    else:
        return None
    finally:
        wire.close()
        await redis.aclose()


def test_concurrent_calls_each_get_their_own_reply_on_one_connection(redis_url: str) -> None:
    """500 scripts at once: each caller gets the reply to its own command, and all of them
    went over a single connection."""

    async def scenario() -> tuple[list[Any], list[int]]:
        redis = client(redis_url)
        wire = wire_of(redis)
        replies = await asyncio.gather(*(echo(redis, wire, f"k{n}", f"v{n}") for n in range(500)))
        connections = await wire_connections(redis)
        wire.close()
        await redis.aclose()
        return replies, connections

    replies, connections = run(scenario)
    assert replies == [[f"k{n}".encode(), f"v{n}".encode()] for n in range(500)]
    assert len(connections) == 1


def test_a_late_reply_fails_its_call_and_is_never_read_by_the_next(redis_url: str) -> None:
    """A reply later than the socket timeout fails its call, and the call queued behind it,
    with Redis's TimeoutError; the next call is answered on a new connection with its own
    reply, not the late one."""

    async def scenario() -> tuple[list[bool], Any]:
        redis = client(redis_url, socket_timeout=0.1)
        wire = wire_of(redis)
        for source in (SLOW_SCRIPT, ECHO):
            await redis.script_load(source)
        slow = LuaScript(redis, SLOW_SCRIPT, wire)([], [])
        behind = echo(redis, wire, "k", "behind")
        outcomes = await asyncio.gather(slow, behind, return_exceptions=True)
        await asyncio.sleep(0.4)  # the late reply has arrived by now
        reply = await echo(redis, wire, "k", "fresh")
        wire.close()
        await redis.aclose()
        return [isinstance(outcome, RedisTimeoutError) for outcome in outcomes], reply

    timed_out, reply = run(scenario)
    assert timed_out == [True, True]
    assert reply == [b"k", b"fresh"]


def test_a_cancelled_call_leaves_nothing_behind_and_keeps_the_connection(redis_url: str) -> None:
    """A call cancelled while its script runs (the visitor left): its reply is dropped when
    it comes, the next call gets its own, and the connection stays open."""

    async def scenario() -> tuple[Any, list[int], list[int]]:
        redis = client(redis_url)
        wire = wire_of(redis)
        await echo(redis, wire, "k", "first")
        before = await wire_connections(redis)
        slow = asyncio.create_task(LuaScript(redis, SLOW_SCRIPT, wire)([], []))
        await asyncio.sleep(0.05)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        reply = await echo(redis, wire, "k", "fresh")
        after = await wire_connections(redis)
        wire.close()
        await redis.aclose()
        return reply, before, after

    reply, before, after = run(scenario)
    assert reply == [b"k", b"fresh"]
    assert len(before) == 1
    assert after == before


def test_an_error_reply_is_raised_and_the_connection_serves_on(redis_url: str) -> None:
    """A script's error reply is raised as redis-py raises it; the calls around it are
    answered on the same connection."""

    async def scenario() -> tuple[list[Any], int]:
        redis = client(redis_url)
        wire = wire_of(redis)
        failing = LuaScript(redis, "return redis.error_reply('ERR nope')", wire)([], [])
        outcomes = await asyncio.gather(
            echo(redis, wire, "k", "a"), failing, echo(redis, wire, "k", "b"),
            return_exceptions=True,
        )  # fmt: skip
        connections = len(await wire_connections(redis))
        wire.close()
        await redis.aclose()
        return list(outcomes), connections

    outcomes, connections = run(scenario)
    assert outcomes[0] == [b"k", b"a"]
    assert isinstance(outcomes[1], ResponseError)
    assert "nope" in str(outcomes[1])
    assert outcomes[2] == [b"k", b"b"]
    assert connections == 1


def test_a_script_redis_forgot_is_loaded_again(redis_url: str) -> None:
    """After SCRIPT FLUSH (a Redis restart does the same) the NOSCRIPT reply makes the
    script load itself again, and the call still gets its answer."""

    async def scenario() -> Any:
        redis = client(redis_url)
        wire = wire_of(redis)
        await echo(redis, wire, "k", "before")
        await redis.script_flush()
        reply = await echo(redis, wire, "k", "after")
        wire.close()
        await redis.aclose()
        return reply

    assert run(scenario) == [b"k", b"after"]


def test_a_connection_the_server_closed_is_replaced(redis_url: str) -> None:
    """Redis closing the connection (CLIENT KILL, a restart, a timeout of its own) costs
    nothing once noticed: the next call is answered on a new connection."""

    async def scenario() -> tuple[Any, list[int], list[int]]:
        redis = client(redis_url)
        wire = wire_of(redis)
        await echo(redis, wire, "k", "first")
        before = await wire_connections(redis)
        await redis.client_kill_filter(_id=str(before[0]))
        await asyncio.sleep(0.05)
        reply = await echo(redis, wire, "k", "second")
        after = await wire_connections(redis)
        wire.close()
        await redis.aclose()
        return reply, before, after

    reply, before, after = run(scenario)
    assert reply == [b"k", b"second"]
    assert len(after) == 1
    assert after != before


def test_a_stopped_redis_fails_calls_at_once_and_a_restarted_one_answers() -> None:
    """Calls to a Redis that went away fail with ConnectionError (the gateway's cue to admit
    from its fallback) instead of hanging; once it is back, calls are answered again."""
    port = free_port()
    servers = [start_redis(port)]

    async def scenario() -> tuple[bool, Any]:
        redis = client(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
        wire = wire_of(redis)
        await echo(redis, wire, "k", "before")
        stop_process(servers[0])
        try:
            await asyncio.wait_for(echo(redis, wire, "k", "down"), timeout=3)
        except RedisConnectionError:
            failed = True
        else:
            failed = False
        servers.append(start_redis(port))
        reply = await echo(redis, wire, "k", "back")
        wire.close()
        await redis.aclose()
        return failed, reply

    try:
        failed, reply = run(scenario)
    finally:
        for server in servers:
            stop_process(server)
    assert failed
    assert reply == [b"k", b"back"]


def test_the_password_and_database_in_the_url_are_used() -> None:
    """A Redis that wants a password gets the one in the URL, and the script runs in the
    URL's database."""
    port = free_port()
    server = start_redis(port, "--requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{port}/3"

    async def scenario() -> tuple[Any, Any, Any]:
        redis = client(url)
        wire = wire_of(redis)
        await LuaScript(redis, "return redis.call('SET', KEYS[1], ARGV[1])", wire)(["k"], ["v"])
        in_three = await redis.get("k")
        other = client(f"redis://:s3cret@127.0.0.1:{port}/0")
        in_zero = await other.get("k")
        wire.close()
        await redis.aclose()
        await other.aclose()
        return in_three, in_zero, await failure_of_a_call(f"redis://127.0.0.1:{port}/3")

    try:
        in_three, in_zero, without_password = run(scenario)
    finally:
        stop_process(server)
    assert in_three == b"v"
    assert in_zero is None
    # Refused at connect, as redis-py refuses it: the gateway admits from its fallback.
    assert isinstance(without_password, AuthenticationError)


def test_a_unix_socket_redis_is_reached(tmp_path: Path) -> None:
    """The embedded Redis of `make demo` listens on a Unix socket: the wire goes there too."""
    binary = require_binary("redis-server")
    socket_path = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket_path), "--save", ""],
        stdout=subprocess.DEVNULL,
    )

    async def scenario() -> Any:
        for _ in range(200):
            if socket_path.exists():
                break
            await asyncio.sleep(0.02)
        redis = aioredis.Redis(unix_socket_path=str(socket_path))
        wire = wire_of(redis)
        reply = await echo(redis, wire, "k", "unix")
        wire.close()
        await redis.aclose()
        return reply

    try:
        assert run(scenario) == [b"k", b"unix"]
    finally:
        stop_process(server)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_tls_redis_is_reached_and_verified(certificate: tuple[Path, Path], loop: str) -> None:
    """rediss:// (a managed Redis): the wire speaks TLS on the connection redis-py opened and
    verified, with uvloop (what the gateway runs on) as with asyncio's own loop; a server
    whose certificate is not trusted is refused."""
    cert, key = certificate
    port = free_port()
    server = start_redis(
        free_port(),
        *("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
    )
    wait_for_port(port)

    async def scenario() -> tuple[list[Any], Any]:
        redis = client(f"rediss://localhost:{port}/0?ssl_ca_certs={cert}")
        wire = wire_of(redis)
        replies = await asyncio.gather(*(echo(redis, wire, "k", f"v{n}") for n in range(50)))
        wire.close()
        await redis.aclose()
        return list(replies), await failure_of_a_call(f"rediss://localhost:{port}/0")

    runner = uvloop.run if loop == "uvloop" else asyncio.run
    try:
        replies, refused = runner(scenario())
    finally:
        stop_process(server)
    assert replies == [[b"k", f"v{n}".encode()] for n in range(50)]
    assert "certificate" in str(refused).lower()


def test_clients_without_a_plain_connection_keep_redis_pys_path() -> None:
    """fakeredis (the embedded Redis without a redis-server) gets no wire: its scripts go
    through redis-py, as before."""
    assert RedisWire.of(fakeredis.FakeAsyncRedis()) is None
    assert RedisWire.of(aioredis.Redis.from_url("redis://127.0.0.1:1/0")) is not None


@pytest.mark.parametrize("protocol", ["", "?protocol=3", "?protocol=2"])
def test_the_wire_speaks_resp2_whatever_the_client_speaks(redis_url: str, protocol: str) -> None:
    """redis-py 8 speaks RESP3 by default, and on RESP3 Redis may push messages
    (maintenance notices) between a command and its reply: the wire's own connection is
    always RESP2, where nothing comes unasked."""

    async def scenario() -> Any:
        redis = client(redis_url + protocol)
        wire = wire_of(redis)
        info = await wire.execute(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n")
        wire.close()
        await redis.aclose()
        return info

    assert b"resp=2" in run(scenario).split()


def test_a_closed_wire_refuses_calls_and_stops_a_connect_in_progress() -> None:
    """Closing the wire (the gateway stops) while a connect is under way: the waiting call
    fails with ConnectionError, the half-open socket is closed, and later calls are refused
    instead of opening a new connection."""

    async def scenario() -> tuple[Any, Any, int, int]:
        server = FakeRedis("stall")
        await server.start()
        redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        wire = wire_of(redis)
        call = asyncio.ensure_future(wire.execute(b"*1\r\n$4\r\nPING\r\n"))
        await asyncio.sleep(0.1)  # connected, the handshake unanswered
        wire.close()
        outcomes = await asyncio.gather(call, return_exceptions=True)
        later = await asyncio.gather(wire.execute(b"*1\r\n$4\r\nPING\r\n"), return_exceptions=True)
        await asyncio.sleep(0.1)  # the server sees the socket close
        await redis.aclose()
        server.close()
        return outcomes[0], later[0], server.connections, server.closed

    during, after, connections, closed = run(scenario)
    assert isinstance(during, RedisConnectionError)
    assert isinstance(after, RedisConnectionError)
    assert connections == closed == 1


def test_admissions_through_the_wire_decide_as_through_redis_py(redis_url: str) -> None:
    """The same admissions, by the wire and by redis-py's pool, on fresh keys: the same
    decisions, in the same order."""
    limits = Limits(global_limit=4, visitor_limit=2, inflight_cap=3)

    async def decisions(prefix: str, *, by_wire: bool) -> list[tuple[bool, str, int]]:
        redis = client(redis_url)
        wire = wire_of(redis) if by_wire else None
        admitter = RedisAdmitter(
            redis, prefix=prefix, window_seconds=30, lease_seconds=30, wire=wire
        )
        outcomes = []
        for visitor in ["a", "a", "a", "b", "c", "d"]:
            decision = await admitter.admit([visitor], limits)
            outcomes.append((decision.admitted, str(decision.limit), decision.remaining))
        if wire is not None:
            wire.close()
        await redis.aclose()
        return outcomes

    async def scenario() -> tuple[list[Any], list[Any]]:
        return (
            await decisions("by-wire", by_wire=True),
            await decisions("by-pool", by_wire=False),
        )

    by_wire, by_pool = run(scenario)
    assert by_wire == by_pool
    assert [admitted for admitted, _, _ in by_wire] == [True, True, False, True, False, False]


class FakeRedis:
    """A server that speaks enough RESP for redis-py's connect, then misbehaves on the
    first script: `garbage` sends bytes that are no reply, `twice` answers it twice;
    `stall` answers nothing at all."""

    def __init__(self, misbehaviour: str) -> None:
        self.misbehaviour = misbehaviour
        self.misbehaved = False
        self.connections = 0
        self.closed = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        parser = hiredis.Reader()
        if self.misbehaviour == "stall":  # never answers: read until the client hangs up
            while await reader.read(65536):
                pass
            self.closed += 1
            writer.close()
            return
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                name = command[0].upper()
                if name == b"PING":
                    writer.write(b"+PONG\r\n")
                elif name == b"EVALSHA" and not self.misbehaved:
                    self.misbehaved = True
                    if self.misbehaviour == "garbage":
                        writer.write(b"?what\r\n")
                    else:
                        writer.write(b":1\r\n:2\r\n")
                elif name == b"EVALSHA":
                    writer.write(b"$2\r\nok\r\n")
                else:
                    writer.write(b"+OK\r\n")
        writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.mark.parametrize("misbehaviour", ["garbage", "twice"])
def test_what_is_no_reply_to_a_command_closes_the_connection(misbehaviour: str) -> None:
    """Bytes that are no reply, or a reply nobody asked for, are never handed to a later
    call: the connection is closed, the call waiting fails with ConnectionError, and the next
    call is answered on a new connection."""

    async def scenario() -> tuple[list[Any], Any, int]:
        server = FakeRedis(misbehaviour)
        await server.start()
        redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        wire = wire_of(redis)
        script = LuaScript(redis, "return 1", wire)
        first = await asyncio.gather(script([], []), return_exceptions=True)
        await asyncio.sleep(0.05)
        second = await script([], [])
        wire.close()
        await redis.aclose()
        await asyncio.sleep(0.05)  # the server sees the connection close
        server.close()
        return list(first), second, server.connections

    first, second, connections = run(scenario)
    assert connections == 2
    if misbehaviour == "garbage":
        assert isinstance(first[0], RedisConnectionError)
    else:  # the first answer was its reply; the unasked second closed the connection
        assert first[0] == 1
    assert second == b"ok"
