"""Redis round trips per admission, counted by Redis itself (its command statistics) while a
gateway answers a run of chats on one route."""

from __future__ import annotations

import time
from typing import Any

import httpx
import redis

# Commands the scripts run inside Redis are counted too; they are no round trip.
INSIDE_SCRIPTS = {"mget", "incr", "pexpire", "pttl", "time", "zremrangebyscore", "zcard"}
INSIDE_SCRIPTS |= {"zadd", "get", "zrem", "set", "config|resetstat"}


def round_trips(
    redis_url: str,
    gateway_url: str,
    *,
    path: str = "/api/chat",
    body: bytes = b'{"input": "hi"}',
    headers: dict[str, str] | None = None,
    requests: int = 50,
) -> dict[str, Any]:
    """Client commands Redis received per admission on `path`, from its own statistics."""
    client = redis.Redis.from_url(redis_url)
    transcripts_before = _transcripts(client)
    client.config_resetstat()
    sent = {"Content-Type": "application/json", **(headers or {})}
    with httpx.Client(timeout=30) as http:
        statuses = [
            http.post(f"{gateway_url}{path}", content=body, headers=sent).status_code
            for _ in range(requests)
        ]
    time.sleep(0.3)  # the last answers' transcripts are saved just after their streams end
    calls = {
        name.removeprefix("cmdstat_"): data["calls"]
        for name, data in client.info("commandstats").items()
    }
    # Each stream's end is one EVALSHA of finish.lua, the only script that runs ZREM; each
    # answered widget chat then saves its transcript, one EVALSHA each, off the admission
    # path (a key of its own per response: counted by the keys it left).
    stream_ends = calls.get("zrem", 0)
    transcripts = _transcripts(client) - transcripts_before
    return {
        "path": path,
        "requests": requests,
        "admitted": statuses.count(200),
        "evalsha": calls.get("evalsha", 0) - stream_ends - transcripts,
        "stream_end_evalsha": stream_ends,
        "transcript_evalsha": transcripts,
        "conversations_stored": calls.get("set", 0),
        "other": {name: n for name, n in calls.items() if name not in INSIDE_SCRIPTS | {"evalsha"}},
    }


def _transcripts(client: redis.Redis) -> int:
    """How many conversation transcripts Redis holds now."""
    return sum(1 for _ in client.scan_iter(match="*:transcript:*", count=1000))
