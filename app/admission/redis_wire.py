"""The hot path's own line to Redis: our scripts' commands pipelined on one connection (issue 7).

Written by hand beside redis-py, which DESIGN.md names for Redis, for the cost per command
described next (issue 7); redis-py still opens the connection and serves every other call.

redis-py runs a command by checking a connection out of its pool, writing, and waking a task
that reads the reply through an asyncio StreamReader. Here one connection, opened by redis-py
itself (TCP, TLS or a Unix socket, AUTH and SELECT: whatever the URL says), is taken over by an
asyncio Protocol: replies are parsed by hiredis as they arrive and each is handed to the call
that waits for it, in the order the commands went out. Commands made in the same turn of the
event loop leave in one write. Each command is still its own round trip.

A call cancelled while it waits (the visitor left) leaves nothing behind: its reply, when it
comes, is dropped. A reply late by more than the socket timeout closes the connection, every
waiting call fails with Redis's TimeoutError, and the next call opens a new connection. So do a
closed connection (ConnectionError) and anything that is not a reply to a command sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import hiredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import ConnectionPool

log = logging.getLogger("llmgw.redis")
# What hiredis makes of a RESP3 push message (none should come on RESP2).
_PUSH = getattr(hiredis, "PushNotification", ())
CLOSED_HERE = "Connection closed by the gateway."
# The connection classes whose connect() leaves a plain asyncio stream to take over.
_STREAM_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


class RedisWire:
    """One pipelined connection to the Redis a redis-py client points at, for the commands
    of the hot path (packed RESP in, parsed reply out)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        # RESP2 whatever the client speaks (redis-py 8 defaults to RESP3): no push messages
        # (maintenance notices, tracking) that would come between a command and its reply.
        self._connection_kwargs = {**pool.connection_kwargs, "protocol": 2}
        timeout = pool.connection_kwargs.get("socket_timeout")
        self._timeout: float | None = None if timeout is None else float(timeout)
        self._line: _Line | None = None
        self._opening: asyncio.Future[_Line] | None = None
        self._closed = False

    @classmethod
    def of(cls, redis: Redis) -> RedisWire | None:
        """A wire to this client's Redis, or None when its connections are not plain streams
        (fakeredis, a credential provider, a class of someone else's): those keep redis-py's
        own path."""
        pool = redis.connection_pool
        if pool.connection_class not in _STREAM_CONNECTIONS:
            return None
        if pool.connection_kwargs.get("credential_provider") is not None:
            return None
        return cls(pool)

    async def execute(self, command: bytes) -> Any:
        """Send one packed command and return its reply (a Redis error reply is raised)."""
        line = self._line
        if line is None or line.closed is not None:
            line = await self._open()
        return await line.send(command)

    async def _open(self) -> _Line:
        """The connection, opened once for every call that needs it meanwhile."""
        if self._closed:
            raise RedisConnectionError(CLOSED_HERE)
        opening = self._opening
        if opening is None:
            opening = asyncio.ensure_future(self._connect())
            opening.add_done_callback(self._opened)
            self._opening = opening
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            if opening.cancelled() and not _cancelling():  # close() stopped the connect
                raise RedisConnectionError(CLOSED_HERE) from None
            raise

    def _opened(self, opening: asyncio.Future[_Line]) -> None:
        if self._opening is opening:
            self._opening = None
        if opening.cancelled() or opening.exception() is not None:  # read, so never "lost"
            return
        line = opening.result()
        if self._closed:  # closed while the connect finished
            line.fail(RedisConnectionError(CLOSED_HERE))
        else:
            self._line = line

    async def _connect(self) -> _Line:
        connection = self._pool.connection_class(**self._connection_kwargs)
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except BaseException:  # a cancelled connect too: redis-py leaves that socket open
            _drop(connection)
            raise
        reader = getattr(connection, "_reader", None)
        writer = getattr(connection, "_writer", None)
        if (
            writer is None
            or reader is None
            or reader.at_eof()
            or reader.exception() is not None
            or writer.transport.is_closing()
            or len(reader._buffer)  # noqa: SLF001 - bytes no command asked for
        ):
            _drop(connection)
            raise RedisConnectionError("Redis connection could not be taken over.")
        line = _Line(writer, self._timeout)
        writer.transport.set_protocol(line)
        # The streams are ours now: redis-py's connection, once collected, must not close them.
        connection._reader = connection._writer = None  # noqa: SLF001
        return line

    def close(self) -> None:
        """Close the connection for good: calls waiting fail, later calls are refused."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        if self._line is not None:
            self._line.fail(RedisConnectionError(CLOSED_HERE))
            self._line = None


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (not only what it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _drop(connection: Any) -> None:
    """Close a connection redis-py opened but we will not use, without awaiting."""
    writer = getattr(connection, "_writer", None)
    if writer is not None:
        writer.close()
    connection._reader = connection._writer = None  # noqa: SLF001


class _Line(asyncio.Protocol):
    """The taken-over connection: commands out in order, replies matched to them in order."""

    def __init__(self, writer: asyncio.StreamWriter, timeout: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        # The writer is kept only because, once collected, it closes its transport.
        self._writer = writer
        self._transport = writer.transport
        self._timeout = timeout
        self._reader = hiredis.Reader()
        # Calls waiting for a reply, oldest first, with when each is overdue.
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self.closed: RedisError | None = None  # why, once it is

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue a command for this turn's write; the future gets its reply."""
        if self.closed is not None:
            raise self.closed
        loop = self._loop
        future = loop.create_future()
        if not self._waiting:  # nothing in flight: out at once
            self._transport.write(command)
        else:  # more to come this turn, most likely: out together at its end
            if not self._out:
                loop.call_soon(self._flush)
            self._out.append(command)
        if self._timeout is None:
            self._waiting.append((future, 0.0))
            return future
        self._waiting.append((future, loop.time() + self._timeout))
        if self._timer is None:
            self._timer = loop.call_at(self._waiting[0][1], self._check_overdue)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.closed is None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        waiting = self._waiting
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if isinstance(reply, _PUSH):  # none on RESP2; never taken for a reply
                    continue
                if not waiting:
                    self.fail(RedisConnectionError("Redis sent a reply no command asked for."))
                    return
                future = waiting.popleft()[0]
                if future.done():  # its caller was cancelled: the reply is dropped
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_error(str(reply)))
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.fail(RedisConnectionError(f"Protocol error from Redis: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost fails what still waits

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "Connection closed by server." if exc is None else f"Connection lost: {exc}"
        self.fail(RedisConnectionError(reason))

    def _check_overdue(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        overdue = self._waiting[0][1]
        if self._loop.time() >= overdue:
            self.fail(RedisTimeoutError("Timeout reading from Redis."))
        else:
            self._timer = self._loop.call_at(overdue, self._check_overdue)

    def fail(self, error: RedisError) -> None:
        """Close the connection; every call still waiting gets `error`."""
        if self.closed is None:
            self.closed = error
            self._transport.abort()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(type(error)(*error.args))


def _error(message: str) -> ResponseError:
    """The error reply as redis-py raises it (NOSCRIPT: the script must be loaded again)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message.removeprefix("NOSCRIPT "))
    return ResponseError(message)
