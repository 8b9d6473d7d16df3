"""What a `search_posts` tool round adds to an answer, beyond the model's own time (issue 19's
goal: at most 5 ms), measured against the sim, on the test blog's index and on 10,000 passages.

One sim (tokens and prompts as fast as it can: the model's own time is its HTTP exchanges), one
gateway process on its own core with `LLMGW_RAG=tools` on the index (`LLMGW_POSTS_SHARE=file`),
real Redis. Answers alternate, one at a time, which path goes first alternating too:

- (a) the model's own time: straight to the sim, the two requests the gateway sends for a
  question (round 1, the question with the tool offered; round 2, the round's response id and
  a `function_call_output` with the very passages the gateway sent, as the sim recorded them in
  `GET /_sim/requests`), each read to its end;
- (b) the same question through the gateway's `/api/chat`, read to its end;
- (c) a chat without a question mark (no tool call), through the gateway and straight to the
  sim as the gateway sends it: the gateway's ordinary added time.

The tool answer's added time is (b) - (a); the tool round's own cost is that less (c)'s added
time (admission, relay), percentile by percentile.

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/posts_tool_round.py
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h11
import httpx
from goals import Goal
from latency import percentile
from posts_search import README, made_up_posts, made_up_queries
from posts_support import write_posts
from processes import LOAD_CPU, Server, gateway_server, redis_server, sim_server
from rag_support import index_posts
from setups import GATEWAY, OPEN, SAMPLES
from stream_client import StreamConnection
from usage import CpuClock

from app.posts import indexer
from app.posts.search import STOP_WORDS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

ENABLED = os.environ.get("LLMGW_BENCH_POSTS_TOOL", "1") == "1"
ANSWERS = max(10, SAMPLES // 8)  # answers of each kind per index, after the warm-up
WARM_UP = 30  # answers of each kind before measuring
GOAL_MS = 5.0
# The model as fast as the sim goes: a token every 10 µs, a prompt of 1,200 tokens in 0.1 ms.
SIM = ("--slots", "16", "--queue", "64", "--decode-rate", "100000", "--prefill-rate", "1e7")
# The round-2 answer quotes the passage: room for its opening; the call's arguments fit too.
SETTINGS = {**GATEWAY, **OPEN, "max_output_tokens": 64, "rag": "tools", "posts_share": "file"}
PLAIN = "Hello there"
BLOG_QUESTIONS = (
    "What did you write about Tailscale Funnel?",
    "How do you run Redis on Windows?",
    "How do you check bearer tokens in nginx?",
    "Which port does the funnel expose?",
)
BIG_QUESTIONS = 20
GATEWAY_KINDS = ("gateway_tool", "gateway_plain")  # the gateway's CPU is measured over these
SEARCHED, SOURCES, DELTA = b"posts.searched", b"posts.sources", b"output_text.delta"
MARKS = (SEARCHED, SOURCES, DELTA)
# Where a tool answer's time goes, p50 of each part: through llmgw, then straight to the sim.
PHASES = {
    "gateway_to_searched": "llmgw: sent -> posts.searched (admission, round 1, the search)",
    "gateway_round_2_first": "llmgw: posts.sources -> first text (round 2 sent, its first token)",
    "gateway_rest": "llmgw: first text -> end (round 2's text, the answer's end)",
    "direct_round_1": "sim direct: round 1, sent -> end",
    "direct_round_2_first": "sim direct: round 2, sent -> first text",
    "direct_rest": "sim direct: round 2, first text -> end",
}
_RESPONSE_ID = re.compile(rb'"id":"(resp_[0-9a-f]+)"')
_CALL_ID = re.compile(rb'"call_id":"(call_[0-9]+)"')


@dataclass(frozen=True)
class Recorded:
    """What the gateway sent the sim for one question, and for the plain chat."""

    round_1: bytes
    round_2: dict[str, Any]  # its previous_response_id and call_id replaced per answer
    passages_chars: int


@dataclass
class Samples:
    """Seconds per answer, by kind."""

    direct_tool: list[float] = field(default_factory=list)
    gateway_tool: list[float] = field(default_factory=list)
    direct_plain: list[float] = field(default_factory=list)
    gateway_plain: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in PHASES})
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GATEWAY_KINDS, 0.0))
    failed: int = 0


@dataclass
class Exchanged:
    """One answer read to its end: status, body, seconds from sending to its end, and when
    (seconds after sending) each of MARKS first arrived."""

    status: int = 0
    body: bytes = b""
    seconds: float = 0.0
    marks: dict[bytes, float] = field(default_factory=dict)


async def exchange(connection: StreamConnection, path: str, body: bytes) -> Exchanged:
    """POST and read the whole answer."""
    started = await connection.post(path, body)
    out, chunks = Exchanged(), []
    while True:
        event = await connection.next_event()
        if isinstance(event, h11.Response):
            out.status = event.status_code
        elif isinstance(event, h11.Data):
            chunk = bytes(event.data)
            chunks.append(chunk)
            for mark in MARKS:
                if mark not in out.marks and mark in chunk:
                    out.marks[mark] = connection.received_at - started
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            out.body, out.seconds = b"".join(chunks), connection.received_at - started
            return out


async def direct_tool(
    connection: StreamConnection, recorded: Recorded, phases: dict[str, list[float]]
) -> float | None:
    """Round 1 then round 2 straight to the sim: the two exchanges' seconds (the client's
    look for the ids between them not counted)."""
    first = await exchange(connection, "/v1/responses", recorded.round_1)
    response_id, call_id = _RESPONSE_ID.search(first.body), _CALL_ID.search(first.body)
    if first.status != 200 or response_id is None or call_id is None:
        return None
    follow_up = dict(recorded.round_2)
    follow_up["previous_response_id"] = response_id.group(1).decode()
    follow_up["input"] = [
        {**item, "call_id": call_id.group(1).decode()} for item in follow_up["input"]
    ]
    second = await exchange(connection, "/v1/responses", json.dumps(follow_up).encode())
    if second.status != 200 or b"According to" not in second.body or DELTA not in second.marks:
        return None
    phases["direct_round_1"].append(first.seconds)
    phases["direct_round_2_first"].append(second.marks[DELTA])
    phases["direct_rest"].append(second.seconds - second.marks[DELTA])
    return first.seconds + second.seconds


async def through_gateway(
    connection: StreamConnection, words: str, phases: dict[str, list[float]] | None = None
) -> float | None:
    """A chat through /api/chat; with `phases`, a question whose answer must come from a
    search, its parts kept there."""
    got = await exchange(connection, "/api/chat", json.dumps({"input": words}).encode())
    if got.status != 200 or b"response.completed" not in got.body:
        return None
    if phases is None:
        return got.seconds
    if b"According to" not in got.body or len(got.marks) != len(MARKS):
        return None
    searched, sources, delta = (got.marks[mark] for mark in MARKS)
    phases["gateway_to_searched"].append(searched)  # the gateway sends it after the search
    phases["gateway_round_2_first"].append(delta - sources)
    phases["gateway_rest"].append(got.seconds - delta)
    return got.seconds


def recorded_requests(sim_url: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{sim_url}/_sim/requests", timeout=10)
    answer.raise_for_status()
    return [row["body"] for row in answer.json()["requests"] if "body" in row]


async def record(sim_url: str, gateway: StreamConnection, question: str) -> Recorded:
    """The gateway's two requests for `question`, as the sim got them."""
    assert await through_gateway(gateway, question, Samples().phases) is not None, question
    first, second = recorded_requests(sim_url)[-2:]
    assert first["input"] == question, first
    assert "previous_response_id" not in first, first
    outputs = [item for item in second["input"] if item.get("type") == "function_call_output"]
    assert outputs, second
    assert second["previous_response_id"], second
    chars = sum(len(item["output"]) for item in outputs)
    return Recorded(json.dumps(first).encode(), second, chars)


async def measure(sim_url: str, gateway: Server, questions: tuple[str, ...]) -> dict[str, Any]:
    """Record each question's requests, warm up, then alternate the four kinds of answer."""
    clock = CpuClock(gateway.pid)
    direct, through = StreamConnection(sim_url), StreamConnection(gateway.url)
    recorded = [await record(sim_url, through, question) for question in questions]
    assert await through_gateway(through, PLAIN) is not None
    plain = json.dumps(recorded_requests(sim_url)[-1]).encode()
    samples, warm = Samples(), Samples()
    for number in range(WARM_UP + ANSWERS):
        into = warm if number < WARM_UP else samples
        index = number % len(questions)
        chat = (questions[index], recorded[index], plain)
        await one_of_each(direct, (through, clock), chat, into, number)
    await direct.close()
    await through.close()
    return summary(samples, recorded)


async def one_of_each(
    direct: StreamConnection,
    through: tuple[StreamConnection, CpuClock],
    chat: tuple[str, Recorded, bytes],
    into: Samples,
    number: int,
) -> None:
    """One answer of each kind; the direct ones first on even numbers, last on odd."""
    question, recorded, plain = chat
    gateway, clock = through

    async def direct_plain() -> float | None:
        got = await exchange(direct, "/v1/responses", plain)
        return got.seconds if got.status == 200 and b"response.completed" in got.body else None

    runs: list[tuple[str, Callable[[], Awaitable[float | None]]]] = [
        ("direct_tool", lambda: direct_tool(direct, recorded, into.phases)),
        ("direct_plain", direct_plain),
        ("gateway_tool", lambda: through_gateway(gateway, question, into.phases)),
        ("gateway_plain", lambda: through_gateway(gateway, PLAIN)),
    ]
    if number % 2:
        runs.reverse()
    for kind, run in runs:
        with clock.measure() as spent:
            seconds = await run()
        if kind in into.cpu:
            into.cpu[kind] += spent.seconds
        if seconds is None:
            into.failed += 1
        else:
            getattr(into, kind).append(seconds)


def summary(samples: Samples, recorded: list[Recorded]) -> dict[str, Any]:
    """Percentiles (ms) of each kind, the added times and the tool round's own."""
    out: dict[str, Any] = {
        "answers": len(samples.gateway_tool),
        "failed": samples.failed,
        "passages_chars_mean": sum(r.passages_chars for r in recorded) / len(recorded),
    }
    for name, seconds in samples.phases.items():
        out[f"phase_{name}_p50_ms"] = percentile(seconds, 0.5) * 1000
    for kind, spent in samples.cpu.items():
        out[f"{kind}_cpu_ms"] = spent / max(1, len(getattr(samples, kind))) * 1000
    for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        values = {
            kind: percentile(getattr(samples, kind), share) * 1000
            for kind in ("direct_tool", "gateway_tool", "direct_plain", "gateway_plain")
        }
        for kind, value in values.items():
            out[f"{kind}_{name}_ms"] = value
        tool_added = values["gateway_tool"] - values["direct_tool"]
        plain_added = values["gateway_plain"] - values["direct_plain"]
        out[f"tool_added_{name}_ms"] = tool_added
        out[f"plain_added_{name}_ms"] = plain_added
        out[f"round_own_{name}_ms"] = tool_added - plain_added
    return out


def blog_index(folder: Path) -> Path:
    """The posts' tests' blog, indexed by the real `llmgw posts index`."""
    index = folder / "blog.sqlite3"
    index_posts(write_posts(folder / "blog"), index)
    return index


def big_index(folder: Path) -> tuple[Path, tuple[str, ...]]:
    """posts_search.py's 2,000 made-up posts (10,000 passages), and questions for them."""
    rng = random.Random(19)
    words = [w for w in re.findall(r"[A-Za-z]{3,}", README.read_text()) if len(w) < 15]
    words = [word for word in words if word.lower() not in STOP_WORDS]
    queries = made_up_queries(words, rng)
    index = folder / "big.sqlite3"
    indexer.index(index, "bench", made_up_posts(words, rng), indexer.Options())
    picked: list[str] = []
    for query in queries:
        asked = query.rstrip("?") + "?"
        if asked not in picked:
            picked.append(asked)
        if len(picked) == BIG_QUESTIONS:
            break
    return index, tuple(picked)


def run_on(redis_url: str, index: Path, questions: tuple[str, ...]) -> dict[str, Any]:
    with sim_server(*SIM) as sim, gateway_server(
        redis_url=redis_url, upstream_url=sim.url, posts_index=str(index), **SETTINGS
    ) as gateway:  # fmt: skip
        return asyncio.run(measure(sim.url, gateway, questions))


def run() -> dict[str, Any]:
    """Both indexes, each with its own sim and gateway, on one Redis."""
    folder = Path(tempfile.mkdtemp(prefix="llmgw-bench-tool-round-"))
    try:
        blog = blog_index(folder)
        big, questions = big_index(folder)
        with redis_server() as redis_url:
            return {
                "blog": run_on(redis_url, blog, BLOG_QUESTIONS),
                "10k": run_on(redis_url, big, questions),
            }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


LABELS = {"blog": "test blog (4 posts)", "10k": "10,000 passages"}


def posts_tool_round_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 19's: a tool round adds at most 5 ms to an answer beyond the model's own time."""
    return [
        Goal(
            f"tool round, {LABELS[name]}: answer through llmgw - the model's own time, {share}",
            GOAL_MS,
            item[f"tool_added_{share}_ms"],
            "ms",
            f"model's own {item[f'direct_tool_{share}_ms']:.2f} ms; of it the round's own "
            f"{item[f'round_own_{share}_ms']:.2f} ms (a plain chat adds "
            f"{item[f'plain_added_{share}_ms']:.2f} ms)",
        )
        for name, item in result.items()
        for share in ("p50", "p90")
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    """The tool round's section: every figure of both indexes."""
    rows = [
        "",
        "## A search_posts tool round (issue 19)",
        "",
        (
            "One answer at a time, alternating: (a) the model's own time, the gateway's two "
            "requests for a question sent straight to the sim (round 1 with the tool; round 2 "
            "with the passages the gateway sent); (b) the question through `/api/chat` "
            "(LLMGW_RAG=tools); (c) a chat without a question (no call), gateway and direct. "
            "Whole answers, read to their end; sim at 100,000 tokens/s and 10^7 prompt tokens/s."
        ),
        "",
        "| index | figure | p50 | p90 | p99 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    figures = (
        ("direct_tool", "(a) tool answer, sim direct"),
        ("gateway_tool", "(b) tool answer, through llmgw"),
        ("tool_added", "(b) - (a): added by llmgw"),
        ("direct_plain", "(c) plain chat, sim direct"),
        ("gateway_plain", "(c) plain chat, through llmgw"),
        ("plain_added", "(c) added by llmgw"),
        ("round_own", "the tool round's own: (b) - (a) - (c)'s added"),
    )
    for name, item in result.items():
        for key, label in figures:
            values = " | ".join(f"{item[f'{key}_{p}_ms']:.2f} ms" for p in ("p50", "p90", "p99"))
            rows.append(f"| {LABELS[name]} | {label} | {values} |")
    rows += [
        "",
        (
            "Where a tool answer's time goes (p50 of each part, as the client saw the frames "
            "arrive; llmgw sends posts.searched with posts.sources, after the search):"
        ),
        "",
        "| part | " + " | ".join(LABELS[name] for name in result) + " |",
        "| --- |" + " ---: |" * len(result),
    ]
    rows += [
        f"| {label} | "
        + " | ".join(f"{item[f'phase_{name}_p50_ms']:.2f} ms" for item in result.values())
        + " |"
        for name, label in PHASES.items()
    ]
    rows.append("")
    rows += [
        f"{LABELS[name]}: {item['answers']} answers of each kind, {item['failed']} failed; "
        f"passages sent back {item['passages_chars_mean']:.0f} characters on average; "
        f"the gateway's CPU per answer {item['gateway_tool_cpu_ms']:.2f} ms with a tool round, "
        f"{item['gateway_plain_cpu_ms']:.2f} ms without. p99 of so few is about their slowest, "
        "and the round's own (a difference of differences of percentiles) is noise there: it "
        "can come out negative."
        for name, item in result.items()
    ]
    return rows


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})  # the client beside the sim, as in make bench
    result = run()
    print("\n".join(markdown(result)))
    for goal in posts_tool_round_goals(result):
        print(f"{goal.name}: {goal.measured:.2f} ms (<= {GOAL_MS} ms) {goal.verdict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
