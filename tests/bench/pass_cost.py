"""What a visitor pass costs the server per call, on one core (issue 16's goal: at most 50 µs
each): `verify_solution` on a good payload as the widget posts it and on refused ones, and
`read_pass` on a good pass and a tampered one; making a challenge and a pass beside them.
Redis's SET NX is left out: it is one round trip, timed with the admission's.

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/pass_cost.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

from goals import Goal
from processes import GATEWAY_CPU

from app.access.passes import challenge, issue_pass, read_pass, verify_solution

if TYPE_CHECKING:
    from collections.abc import Callable

KEY = b"bench-key-of-at-least-32-characters!"
NETWORK = "203.0.113.0/24"
BATCH = 1_000
BATCHES = 100
GOAL_US = 50.0


def per_call_us(call: Callable[[], object]) -> float:
    """The median over batches of the mean µs per call within a batch."""
    for _ in range(BATCH):
        call()  # warm up
    batches = []
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(BATCH):
            call()
        batches.append((time.perf_counter() - started) / BATCH * 1e6)
    return statistics.median(batches)


def solved_payload() -> str:
    """A solution as the widget posts it: base64 of the JSON, with the number brute-forced."""
    made = challenge(0, key=KEY, base_max_number=1000, expires_seconds=3600)
    number = next(
        n
        for n in range(made["maxNumber"] + 1)
        if hashlib.sha256(f"{made['salt']}{n}".encode()).hexdigest() == made["challenge"]
    )
    fields = {name: made[name] for name in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**fields, "number": number, "took": 120}).encode()).decode()


def measure() -> dict[str, float]:
    """µs per call of each path."""
    payload = solved_payload()
    other_key = b"another-key-of-at-least-32-chars!"
    token = issue_pass(NETWORK, key=KEY)
    tampered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    return {
        "verify_solution, good": per_call_us(lambda: verify_solution(payload, key=KEY)),
        "verify_solution, bad signature": per_call_us(
            lambda: verify_solution(payload, key=other_key)
        ),
        "verify_solution, malformed": per_call_us(lambda: verify_solution("x" * 500, key=KEY)),
        "read_pass, good": per_call_us(lambda: read_pass(token, NETWORK, key=KEY)),
        "read_pass, tampered": per_call_us(lambda: read_pass(tampered, NETWORK, key=KEY)),
        "challenge, base difficulty": per_call_us(
            lambda: challenge(0, key=KEY, base_max_number=50_000, expires_seconds=300)
        ),
        "issue_pass": per_call_us(lambda: issue_pass(NETWORK, key=KEY)),
    }


def pass_cost_goals(result: dict[str, Any]) -> list[Goal]:
    """Issue 16's goals: verifying a solution and a pass, each at most 50 µs on one core."""
    return [
        Goal(
            "pass: verify a solution",
            GOAL_US,
            result["verify_solution, good"],
            "µs",
            f"refused: {result['verify_solution, bad signature']:.1f} µs",
        ),
        Goal(
            "pass: verify a pass",
            GOAL_US,
            result["read_pass, good"],
            "µs",
            f"tampered: {result['read_pass, tampered']:.1f} µs",
        ),
    ]


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {GATEWAY_CPU})  # one core, as the gateway gets in the benchmark
    result = measure()
    for name, micros in result.items():
        print(f"{name}: {micros:.2f} µs per call")
    for goal in pass_cost_goals(result):
        print(f"{goal.name}: {goal.measured:.2f} {goal.unit} ({goal.target()}: {goal.verdict()})")


if __name__ == "__main__":
    main()
