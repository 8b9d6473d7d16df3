"""Our Lua scripts' own way to Redis: EVALSHA packed here, sent on the pipelined wire
(app/admission/redis_wire.py) or, without one, on a pooled connection."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from app.admission.redis_wire import RedisWire


class LuaScript:
    """One of our Lua scripts, run by EVALSHA, and by EVAL (which makes Redis keep it again)
    when Redis has forgotten it. Neither redis-py's `Script` (its isinstance check against a
    typing Protocol cost a third of the client's time per admission) nor `Redis.evalsha`: the
    command is packed here, around bytes made once, and sent on the pipelined wire
    (`redis_wire`) or, without one, on a pooled connection with redis-py's own send and
    read, which skips the retry wrapper, metrics recording and argument encoding of every
    command (issue 7)."""

    def __init__(self, redis: Redis, source: str, wire: RedisWire | None = None) -> None:
        self._redis = redis
        self._wire = wire
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._evalsha = b"$7\r\nEVALSHA\r\n$40\r\n" + self.sha.encode() + b"\r\n"
        self._eval = b"$4\r\nEVAL\r\n" + _bulk(source)

    async def __call__(self, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        """Run the script on these keys and arguments: one round trip while Redis knows it.
        After a restart or SCRIPT FLUSH, each call that meets NOSCRIPT sends the source once
        (no burst of SCRIPT LOADs from every admission in flight)."""
        try:
            return await self._run(self._packed(self._evalsha, keys, args))
        except NoScriptError:
            return await self._run(self._packed(self._eval, keys, args))

    @staticmethod
    def _packed(name: bytes, keys: Sequence[str], args: Sequence[int | str]) -> bytes:
        """EVALSHA sha (or EVAL source) numkeys key... arg... in the Redis protocol (RESP), as
        redis-py packs it."""
        parts = [b"*%d\r\n" % (3 + len(keys) + len(args)), name, _bulk(len(keys))]
        parts += [_bulk(key) for key in keys]
        parts += [_bulk(arg) for arg in args]
        return b"".join(parts)

    async def _run(self, command: bytes) -> Any:
        if self._wire is not None:
            return await self._wire.execute(command)
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(command)
            return await connection.read_response()
        finally:
            await pool.release(connection)


def _bulk(value: int | str) -> bytes:
    """One RESP bulk string: text as UTF-8 (redis-py's default encoding), integers in decimal."""
    data = value.encode() if isinstance(value, str) else b"%d" % value
    return b"$%d\r\n%b\r\n" % (len(data), data)
