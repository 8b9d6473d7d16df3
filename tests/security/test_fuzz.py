"""Bad input, generated: hypothesis throws arbitrary and near-valid JSON, huge strings, odd
unicode, deep nesting, odd headers, wrong Content-Lengths and odd GETs at one real gateway
process in front of the simulator. Never a 5xx, and nothing reaches the model unless the
gateway answered 200. Then slow-loris bodies and huge headers: the gateway's memory stays
bounded and it keeps answering."""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from gateway_subprocess import GatewayProcess, gateway_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_process import SimHandle, running_sim
from support import flushed

if TYPE_CHECKING:
    from collections.abc import Iterator

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MAX_BODY = 32_768
FUZZ = settings(
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)


def examples(count: int) -> settings:
    """The suite's settings with this many examples (sized so the module stays near 60 s)."""
    return settings(FUZZ, max_examples=count)


STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


@dataclass
class Tally:
    """Cases run per test, and every status seen."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    figures: dict[str, Any] = field(default_factory=dict)


TALLY = Tally()


@dataclass
class Target:
    gateway: GatewayProcess
    sim: SimHandle
    client: httpx.Client

    @property
    def port(self) -> int:
        return int(self.gateway.url.rsplit(":", 1)[1])

    def started(self) -> int:
        return int(self.sim.stats()["started"])


@pytest.fixture(scope="module")
def target(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One gateway process and one sim for the whole module; limits raised so that no 429 can
    hide what the input did."""
    redis_server = flushed(redis_server)
    log = tmp_path_factory.mktemp("fuzz") / "gateway.log"
    with (
        running_sim("--decode-rate", "5000", "--output-tokens", "3", "--slots", "16") as sim,
        gateway_process(
            log,
            upstream_url=sim.url,
            redis_url=redis_server,
            global_limit="10000000",
            visitor_limit="10000000",
            max_inflight="1000",
            probe_stale_factor="1",
            health_interval="0",
        ) as gateway,
        httpx.Client(base_url=gateway.url, timeout=30) as client,
    ):
        yield Target(gateway, sim, client)
        assert "Traceback" not in log.read_text(errors="replace")


def check_chat(
    target: Target, test: str, body: bytes, headers: dict[str, Any] | None = None
) -> int:
    """POST /api/chat, read the whole answer; no 5xx, and the model started a generation
    exactly when the answer was 200."""
    before = target.started()
    sent = {"Content-Type": "application/json", **(headers or {})}
    with target.client.stream("POST", "/api/chat", content=body, headers=sent) as response:
        response.read()
    status = response.status_code
    TALLY.cases[test] += 1
    TALLY.statuses[status] += 1
    assert status < 500, (status, body[:200], response.text[:300])
    assert target.started() - before == (1 if status == 200 else 0), (status, body[:200])
    return status


def check_status(status: int) -> None:
    TALLY.statuses[status] += 1
    assert status < 500


# --- bodies ----------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
roles = st.sampled_from(["user", "assistant", "system", "tool", "developer", "", "USER"])
messages = st.fixed_dictionaries(
    {"role": roles | st.text(max_size=6), "content": st.text(max_size=60) | json_values},
    optional={"name": st.text(max_size=5), "type": st.just("message")},
)
near_valid = st.fixed_dictionaries(
    {"input": st.text(max_size=300) | st.lists(messages, max_size=40)},
    optional={
        "previous_response_id": st.none()
        | st.text(max_size=30)
        | st.from_regex(r"resp_[A-Za-z0-9_-]{1,40}", fullmatch=True),
        "stream": st.booleans(),
        "model": st.text(max_size=10),
        "temperature": st.floats(),
        "max_output_tokens": st.integers(),
        "instructions": st.text(max_size=20),
    },
)
odd_characters = st.characters(
    categories=["Cc", "Cf", "Co", "Cs", "Cn", "Zs", "Zl", "Zp", "Mn", "Me", "So", "Lo"]
)


def encoded(value: object) -> bytes:
    """JSON as a client would send it; NaN and infinities as Python writes them (not JSON)."""
    return json.dumps(value, allow_nan=True).encode()


@examples(250)
@given(value=json_values, placement=st.sampled_from(["body", "input", "extra field"]))
def test_arbitrary_json(target: Target, value: object, placement: str) -> None:
    """Any JSON value as the body, as the input, or as an unknown field: a 4xx or a 200."""
    body = {"body": value, "input": {"input": value}, "extra field": {"input": "hi", "x": value}}
    check_chat(target, "arbitrary JSON", encoded(body[placement]))


@examples(250)
@given(body=near_valid)
def test_near_valid_shapes(target: Target, body: dict[str, object]) -> None:
    """Bodies shaped almost like a chat (odd roles, fields a visitor may not set, wrong types,
    too many messages, made-up response ids): a 4xx, or a 200 for a valid one."""
    check_chat(target, "near-valid shapes", encoded(body))


@examples(40)
@given(character=st.characters(), size=st.integers(1, 400_000), as_list=st.booleans())
def test_huge_strings(target: Target, character: str, size: int, as_list: bool) -> None:
    """Long inputs up to 400 k characters: 413 above the byte cap (before parsing), 400 above
    the character cap, else a 200."""
    text = character * size
    value: object = [{"role": "user", "content": text}] if as_list else text
    status = check_chat(target, "huge strings", encoded({"input": value}))
    if len(encoded({"input": value})) > MAX_BODY:
        assert status == 413


@examples(150)
@given(
    text=st.text(alphabet=odd_characters, min_size=1, max_size=200),
    raw=st.binary(max_size=200),
)
def test_odd_unicode_and_raw_bytes(target: Target, text: str, raw: bytes) -> None:
    """Control and format characters, lone surrogates, private use, unassigned code points,
    invisible spaces; and bodies that are not UTF-8 at all."""
    check_chat(target, "odd unicode", encoded({"input": text}))
    check_chat(target, "odd unicode", b'{"input": "' + raw + b'"}')


@examples(40)
@given(
    depth=st.integers(1, 16_000),
    opener=st.sampled_from([("[", "]"), ('{"a":', "}")]),
    where=st.sampled_from(["body", "input", "extra field"]),
)
def test_deep_nesting(target: Target, depth: int, opener: tuple[str, str], where: str) -> None:
    """Arrays or objects nested up to 16 000 deep, as the body, the input or an unknown field."""
    nested = opener[0] * depth + "1" + opener[1] * depth
    body = {"body": nested, "input": f'{{"input": {nested}}}', "extra field": ""}
    body["extra field"] = f'{{"input": "hi", "x": {nested}}}'
    check_chat(target, "deep nesting", body[where].encode())


# --- headers ---------------------------------------------------------------------------------

header_values = st.binary(max_size=300).map(
    # What HTTP lets through: no control characters but tab, no space at either end.
    lambda raw: bytes(b for b in raw if b == 9 or 32 <= b != 127).strip(b" \t")
)
addresses = st.one_of(
    st.ip_addresses().map(str),
    st.text(alphabet="0123456789abcdef.:[]%, ", max_size=60).map(str.strip),
    st.lists(st.ip_addresses().map(str), max_size=8).map(", ".join),
)


@examples(200)
@given(
    headers=st.fixed_dictionaries(
        {},
        optional={
            "X-Thumbmark-Id": header_values
            | st.from_regex(r"[A-Za-z0-9_.:-]{1,140}", fullmatch=True).map(str.encode),
            "X-Forwarded-For": addresses.map(str.encode) | header_values,
            "Content-Type": header_values | st.sampled_from([b"text/plain", b"application/xml"]),
        },
    )
)
def test_odd_headers(target: Target, headers: dict[str, bytes]) -> None:
    """X-Thumbmark-Id, X-Forwarded-For and Content-Type of any shape, on a valid body."""
    check_chat(target, "odd headers", b'{"input": "hello"}', headers)


def raw_exchange(port: int, request: bytes, wait: float) -> bytes:
    """Send bytes on a fresh connection and read until the server closes or `wait` passes."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


@examples(50)
@given(body=st.binary(max_size=60) | near_valid.map(encoded), skew=st.integers(-60, 60))
def test_content_length_mismatch(target: Target, body: bytes, skew: int) -> None:
    """A Content-Length that disagrees with the body: shorter (the rest is read as a second,
    broken request) or longer (the gateway waits for bytes that never come). No 5xx, and a
    body that never arrived whole never reaches the model."""
    declared = max(0, len(body) + skew)
    head = b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    request = head + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % declared + body
    before = target.started()
    received = raw_exchange(target.port, request, wait=0.1 if declared > len(body) else 10)
    statuses = [int(code) for code in STATUS_LINE.findall(received)]
    TALLY.cases["content-length mismatch"] += 1
    for status in statuses:
        check_status(status)
    if declared > len(body):
        assert statuses == []
    assert target.started() - before == statuses.count(200)


# --- the public GET endpoints ----------------------------------------------------------------

PATHS = [
    "/", "/llmgw-chat.js", "/healthz", "/readyz", "/api/status", "/metrics", "/api/chat",
    "/v1/models",
]  # fmt: skip


@examples(250)
@given(
    method=st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(PATHS) | st.text(max_size=40).map(lambda p: "/" + quote(p)),
    query=st.text(max_size=40),
    headers=st.fixed_dictionaries(
        {},
        optional={
            b"Accept": header_values,
            b"If-None-Match": header_values,
            b"Origin": header_values,
        },
    ),
)
def test_public_endpoints(
    target: Target, method: str, path: str, query: str, headers: dict[bytes, bytes]
) -> None:
    """Every public route (and made-up ones) with any method, query string, Accept,
    If-None-Match and Origin: never a 5xx, and nothing reaches the model (no body, no chat)."""
    before = target.started()
    url = f"{path}?{quote(query)}" if query else path
    response = target.client.request(method, url, headers=headers)
    TALLY.cases["public endpoints"] += 1
    check_status(response.status_code)
    assert target.started() == before


# --- memory under slow bodies and huge headers -----------------------------------------------

SLOW_CONNECTIONS = 300
SLOW_SECONDS = 6.0
SLOW_CHUNK = 1000
SLOW_OPENING = b'{"input": "'
# Each slow body stays below its Content-Length: the gateway must wait for the rest.
SLOW_BUDGET = MAX_BODY - 100 - len(SLOW_OPENING)
HUGE_HEADER = 100_000
HUGE_CONNECTIONS = 100
MEMORY_BOUND = 64 * 2**20
ENDLESS_MIB = 16


def answers(target: Target) -> float:
    """Seconds /healthz takes, asserting a 200, and that a chat still streams."""
    started = time.monotonic()
    assert target.client.get("/healthz").status_code == 200
    took = time.monotonic() - started
    assert check_chat(target, "while under load", b'{"input": "still there?"}') == 200
    return took


def open_slow_bodies(target: Target) -> list[socket.socket]:
    request = (
        b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (MAX_BODY - 100, SLOW_OPENING)
    )
    sockets = []
    for _ in range(SLOW_CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=5)
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def test_slow_bodies_keep_memory_bounded(target: Target) -> None:
    """300 connections trickle a body of almost the byte cap for seconds (slow loris): memory
    grows by a bounded amount, /healthz stays fast and chats still stream; nothing reaches the
    model for the slow ones."""
    baseline = target.gateway.rss()
    before = target.started()
    sockets = open_slow_bodies(target)
    peak, slowest, chats, sent = baseline, 0.0, 0, 0
    deadline = time.monotonic() + SLOW_SECONDS
    try:
        while time.monotonic() < deadline:
            if sent + SLOW_CHUNK < SLOW_BUDGET:  # never complete a body
                for sock in sockets:
                    sock.sendall(b"a" * SLOW_CHUNK)
                sent += SLOW_CHUNK
            peak = max(peak, target.gateway.rss())
            slowest = max(slowest, answers(target))
            chats += 1
            time.sleep(0.1)
    finally:
        for sock in sockets:
            sock.close()
    TALLY.figures["slow bodies"] = {
        "connections": SLOW_CONNECTIONS,
        "seconds": SLOW_SECONDS,
        "bytes_each": sent,
        "rss_before_mib": round(baseline / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        "slowest_healthz_s": round(slowest, 3),
    }
    assert peak - baseline < MEMORY_BOUND
    assert slowest < 1.0
    assert target.started() - before == chats  # only the chats of answers() reached the model


def test_huge_headers_keep_memory_bounded(target: Target) -> None:
    """100 requests with a 100 KB header each, completed, and 100 more held open mid-header:
    memory grows by a bounded amount and the gateway still answers."""
    baseline = target.gateway.rss()
    pad = b"X-Pad: " + b"a" * HUGE_HEADER + b"\r\n"
    complete = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n" + pad + b"Connection: close\r\n\r\n"
    statuses = [
        STATUS_LINE.findall(raw_exchange(target.port, complete, wait=5))
        for _ in range(HUGE_CONNECTIONS)
    ]
    held = []
    for _ in range(HUGE_CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Pad: " + b"a" * HUGE_HEADER)
        held.append(sock)
    try:
        time.sleep(0.5)
        peak = target.gateway.rss()
        slowest = answers(target)
    finally:
        for sock in held:
            sock.close()
    TALLY.figures["huge headers"] = {
        "header_bytes": HUGE_HEADER,
        "completed": HUGE_CONNECTIONS,
        "held_open": HUGE_CONNECTIONS,
        "statuses": sorted({int(s) for found in statuses for s in found}),
        "rss_before_mib": round(baseline / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        "healthz_s": round(slowest, 3),
    }
    assert all(len(found) == 1 and int(found[0]) < 500 for found in statuses)
    assert peak - baseline < MEMORY_BOUND


def test_a_never_ending_header_is_cut_off(target: Target) -> None:
    """One connection sending a single header for 16 MiB: the gateway cuts it off (closes the
    connection) long before; the memory it grew by is reported."""
    baseline = target.gateway.rss()
    growth, refused = 0, False
    with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Pad: ")
        try:
            for _ in range(ENDLESS_MIB):
                sock.sendall(b"a" * 2**20)
        except OSError:
            refused = True
        growth = target.gateway.rss() - baseline
    TALLY.figures["never-ending header"] = {
        "sent_mib": ENDLESS_MIB,
        "refused": refused,
        "rss_growth_mib": round(growth / 2**20, 1),
    }
    assert refused


def test_report_the_numbers(target: Target) -> None:
    """Every fuzz test ran its cases and none saw a 5xx; the figures go to test-artifacts/."""
    total = sum(TALLY.cases.values())
    summary = {
        "cases": dict(TALLY.cases),
        "total_cases": total,
        "statuses": {str(k): v for k, v in sorted(TALLY.statuses.items())},
        "gateway_rss_mib": round(target.gateway.rss() / 2**20, 1),
        **TALLY.figures,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nfuzz: {json.dumps(summary, indent=2)}")
    assert not [status for status in TALLY.statuses if status >= 500]
    assert total > 1000
