"""`POST /v1/chat/completions` with an owner's key: its first SSE byte beside the same chat
completion sent to the sim's own /v1/chat/completions as the gateway forwards it (usage chunk
asked for), one stream, the two paths alternating phase by phase as in latency.py; and the
Redis round trips of a keyed admission.

Run alone: PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/keyed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from goals import Goal, table
from latency import Level, Target, measure_levels, summarize
from processes import gateway_server, redis_server, sim_server
from round_trips import round_trips
from setups import GATEWAY, LATENCY_SIM, OPEN, SAMPLES
from usage import CpuClock

from app.access.store import CACHE_SECONDS
from app.chat.openai_bodies import Api, KeyedBounds, parse_keyed_request
from app.server.routes.openai_chat import CHAT_PATH
from app.settings import load_settings

ENABLED = os.environ.get("LLMGW_BENCH_KEYED", "1") == "1"
KEY_SECRET = "bench-key-secret-of-forty-characters-000"
LEVEL = Level(streams=1, chats_per_phase=5, phases=max(2, SAMPLES // 5))
# What a client of the OpenAI SDK sends; the answer's length is the latency run's.
CLIENT_BODY = {
    "messages": [{"role": "user", "content": "Hello there"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 8,
}


def owner_key(redis_url: str, name: str = "bench-owner") -> str:
    """A key made as an operator makes one (`llmgw keys create`): the last line it prints."""
    env = {**os.environ, "LLMGW_REDIS_URL": redis_url, "LLMGW_KEY_SECRET": KEY_SECRET}
    command = [sys.executable, "-m", "app", "keys", "create", "--name", name, "--lane", "owner"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.splitlines()[-1]


def targets(sim_url: str, gateway_url: str, key: str) -> tuple[Target, Target]:
    """The client's chat completion to llmgw, and what llmgw forwards of it, to the sim."""
    body = json.dumps(CLIENT_BODY).encode()
    settings = load_settings(**GATEWAY)
    bounds = KeyedBounds(settings.key_max_input_chars, settings.key_max_output_tokens)
    forwarded = parse_keyed_request(body, Api.CHAT, bounds).payload(settings.model, None)
    authorization = (("Authorization", f"Bearer {key}"),)
    return (
        Target("direct", sim_url, CHAT_PATH, forwarded),
        Target("gateway", gateway_url, CHAT_PATH, body, authorization),
    )


def measure(redis_url: str) -> dict[str, Any]:
    """First byte and gaps at one stream, then Redis's commands for a run of keyed chats."""
    key = owner_key(redis_url)
    base = {"redis_url": redis_url, "key_secret": KEY_SECRET, **GATEWAY, **OPEN}
    with sim_server(*LATENCY_SIM) as sim, gateway_server(upstream_url=sim.url, **base) as gateway:
        direct, through = targets(sim.url, gateway.url, key)
        level = measure_levels([LEVEL], direct, through, CpuClock(gateway.pid))[0]
        # Leases renewed only hourly here: a renewal is an EVALSHA too, but no admission.
        with gateway_server(upstream_url=sim.url, lease_seconds=3600, **base) as quiet:
            trips = round_trips(
                redis_url,
                quiet.url,
                path=CHAT_PATH,
                body=through.body,
                headers=dict(through.headers),
            )
    return {"level": summarize(level), "round_trips": trips}


def keyed_goals(result: dict[str, Any]) -> list[Goal]:
    """The keyed route costs what /api/chat does: under 1 ms of first byte, one round trip."""
    level, trips = result["level"], result["round_trips"]
    return [
        Goal(
            "/v1/chat/completions: added first-byte latency, 1 stream, p50",
            1.0,
            level["first_byte_added_p50_ms"],
            "ms",
            f"sim direct {level['first_byte_direct_p50_ms']:.2f} ms, through llmgw "
            f"{level['first_byte_gateway_p50_ms']:.2f} ms",
        ),
        Goal(
            "/v1/chat/completions: Redis round trips per admission",
            1,
            trips["evalsha"] / max(1, trips["requests"]),
            "",
            f"{trips['evalsha']} EVALSHA for {trips['requests']} requests",
        ),
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    """The keyed route's section: its latency table, round trips and goals."""
    level, trips = result["level"], result["round_trips"]
    rows = [
        "",
        "## /v1/chat/completions with an owner's key",
        "",
        (
            "One stream, direct and gateway phases alternating; the sim direct gets the chat "
            "completion as llmgw forwards it (`stream_options.include_usage` set). "
            f"Client body: `{json.dumps(CLIENT_BODY)}` with `Authorization: Bearer <key>`."
        ),
        "",
        "| figure | sim direct p50 / p99 | through llmgw p50 / p99 | added p50 / p99 | samples |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for figure, label in (("first_byte", "first byte"), ("gaps", "gap between chunks")):
        rows.append(
            f"| {label} | {_pair(level, figure, 'direct')} | {_pair(level, figure, 'gateway')} | "
            f"{_pair(level, figure, 'added')} | {level['samples_gateway']:.0f} |"
        )
    rows += [
        "",
        (
            f"{level['failed']:.0f} streams failed. Redis: {trips['evalsha']} EVALSHA for "
            f"{trips['requests']} keyed requests ({trips['admitted']} admitted), "
            f"{trips['stream_end_evalsha']} more at stream ends, other commands {trips['other']}. "
            "An HGET is the key looked up: each gateway caches the answer for "
            f"{CACHE_SECONDS} s, so a key that chats less often than that pays one more round "
            "trip per request, before its admission."
        ),
        "",
        *table(keyed_goals(result)),
    ]
    return rows


def _pair(level: dict[str, float], figure: str, path: str) -> str:
    return f"{level[f'{figure}_{path}_p50_ms']:.2f} / {level[f'{figure}_{path}_p99_ms']:.2f} ms"


if __name__ == "__main__":
    with redis_server() as url:
        outcome = measure(url)
    print(json.dumps(outcome, indent=2))
    print("\n".join(markdown(outcome)))
