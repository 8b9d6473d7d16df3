"""What a visitor pass costs an attacker per admitted chat, at each difficulty step (issue 16:
the attacker's cost must double per step, while a real visitor's first chat stays under 1 s at
base difficulty).

The attacker solves challenges the gateway makes (app/access/passes.py `challenge`) with the
ALTCHA library's own solver on one core, and each pass buys LLMGW_PASS_CHATS chats from one
network; a pool of addresses needs a pass per network, so this is its cost per chat at best.
A challenge's secret number is uniform over [0, maxNumber]: each is made here with the number at
half of maxNumber, the mean work, so that the table shows the expected cost without the noise of
a few random draws. The solver is Python's hashlib, about as fast per core as the widget's
crypto.subtle; native code would be some times faster at every step alike (the doubling holds).
The visitor's side comes from `pass_solve` (the widget in headless Chromium).

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/pass_attack.py
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from altcha.v1 import ChallengeOptions, create_challenge, solve_challenge
from goals import Goal

from app.access.passes import ALGORITHM, Refused, challenge, verify_solution
from app.settings import Settings

KEY = b"a-made-up-bench-key-of-forty-characters-"
FIRST_CHAT_GOAL_S = 1.0
DOUBLING = (1.8, 2.2)  # the per-step ratio of the attacker's cost that counts as a doubling
REPEATS = 3  # solves per step, the fastest kept: the attacker's cost without the machine's noise


def solve(max_number: int) -> tuple[int, float]:
    """One solve of a challenge whose number is at half of max_number: the hashes it took and
    its CPU seconds, checked as the gateway checks it (a refused solution counts for nothing)."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    options = ChallengeOptions(
        ALGORITHM, max_number, hmac_key=KEY, number=max_number // 2, expires=expires
    )
    made = create_challenge(options)
    started = time.process_time()
    solution = solve_challenge(made.challenge, made.salt, ALGORITHM, max_number)
    took = time.process_time() - started
    if solution is None:
        raise RuntimeError(f"no solution found up to {max_number}")
    payload = {
        "algorithm": ALGORITHM,
        "challenge": made.challenge,
        "number": solution.number,
        "salt": made.salt,
        "signature": made.signature,
    }
    refused = verify_solution(json.dumps(payload), key=KEY)
    if isinstance(refused, Refused):
        raise RuntimeError(f"the gateway would refuse this solution: {refused.reason}")  # noqa: TRY004
    return solution.number + 1, took


def measure(settings: Settings | None = None) -> dict[str, Any]:
    """Per step up to LLMGW_PASS_MAX_STEPS, priced as the gateway prices it (its `challenge`):
    maxNumber, the attacker's hashes and CPU seconds per pass (the fastest of REPEATS), and its
    cost per admitted chat at the run's hash rate (all hashes over all seconds, so that the
    machine's noise at one step does not blur the doubling), with the ratio to the step before."""
    settings = settings or Settings()
    measured: list[tuple[int, int, float]] = []
    for step in range(settings.pass_max_steps + 1):
        made = challenge(
            step, key=KEY, base_max_number=settings.pass_base_number, expires_seconds=60
        )
        max_number = int(made["maxNumber"])
        runs = [solve(max_number) for _ in range(REPEATS)]
        hashes, seconds = min(runs, key=lambda run: run[1])
        measured.append((max_number, hashes, seconds))
    rate = sum(h for _, h, _ in measured) / sum(s for _, _, s in measured)
    rows: list[dict[str, float]] = []
    for step, (max_number, hashes, seconds) in enumerate(measured):
        per_chat = hashes / rate / settings.pass_chats
        ratio = per_chat / rows[-1]["per_chat_s"] if rows else 1.0
        rows.append(
            {"step": step, "max_number": max_number, "hashes": hashes, "solve_s": seconds,
             "per_chat_s": per_chat, "ratio": ratio}
        )  # fmt: skip
    return {"chats_per_pass": settings.pass_chats, "hashes_per_second": rate, "steps": rows}


def pass_attack_goals(result: dict[str, Any], first_chat_s: float | None) -> list[Goal]:
    """The attacker's cost doubles per step (the smallest and largest ratio of step to step),
    and a visitor's first chat at base difficulty stays under a second."""
    ratios = [row["ratio"] for row in result["steps"][1:]]
    goals = [
        Goal(
            "pass: attacker's cost per chat, smallest step-to-step ratio",
            DOUBLING[0],
            min(ratios),
            "x",
            f"largest {max(ratios):.2f}x over steps 1 to {len(ratios)}",
            at_least=True,
        ),
        Goal(
            "pass: attacker's cost per chat, largest step-to-step ratio",
            DOUBLING[1],
            max(ratios),
            "x",
            "a step should double the work, not more",
        ),
    ]
    if first_chat_s is not None:
        goals.append(
            Goal(
                "pass: a visitor's first chat at base difficulty (to the first words)",
                FIRST_CHAT_GOAL_S,
                first_chat_s,
                "s",
                "widget in headless Chromium: pass, then the chat",
            )
        )
    return goals


def table(
    result: dict[str, Any], first_chat_s: float | None = None, widget_rate: float | None = None
) -> list[str]:
    """The table of the report: a row per step; beside it a visitor's solve at the widget's
    measured hash rate, and their first chat at base."""
    lines = [
        (
            "| step | maxNumber | attacker's hashes per pass | measured s per pass | attacker's"
            f" cost per chat ({result['chats_per_pass']} per pass) | x previous | visitor's solve"
            " at the widget's rate | visitor's first chat |"
        ),
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["steps"]:
        first = f"{first_chat_s:.2f} s" if row["step"] == 0 and first_chat_s else ""
        ratio = f"{row['ratio']:.2f}" if row["step"] else ""
        visitor = f"{row['hashes'] / widget_rate:.2f} s" if widget_rate else ""
        lines.append(
            f"| {row['step']} | {row['max_number']:,} | {row['hashes']:,} | {row['solve_s']:.3f} |"
            f" {row['per_chat_s'] * 1000:.2f} ms | {ratio} | {visitor} | {first} |"
        )
    return lines


def main() -> None:
    result = measure()
    print(f"attacker's hash rate, one core: {result['hashes_per_second']:,.0f}/s")
    print("\n".join(table(result)))
    for goal in pass_attack_goals(result, None):
        print(f"{goal.name}: {goal.measured:.2f} {goal.unit} ({goal.target()}: {goal.verdict()})")


if __name__ == "__main__":
    main()
