"""What energy per answer costs the gateway per chat (issue 20's goal: nothing measurable on the
chat's hot path). Two parts, each the process CPU time over many chats:

- at the stream's end, on the event loop: `EnergyLedger.answered` (the one call in
  `Exchange.finish`): the model's counters and the answer kept for its energy;
- in the probe watcher's background task: `EnergyLedger.record` for each snapshot (an interval,
  the answers it settles, their shares and histograms), divided by the answers settled.

A host with 4 slots always busy, answers of 8 s and 200 output tokens starting in turn, a
snapshot a second: each answer lives through 9 intervals and shares each with 3 others.

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/energy_cost.py
"""

from __future__ import annotations

import os
import time

from energy_support import Clock, ended
from goals import Goal
from processes import GATEWAY_CPU

from app.protection.energy import EnergyLedger
from app.telemetry import GatewayMetrics

SLOTS = 4
ANSWER_SECONDS = 8.0
TOKENS = 200
SNAPSHOT_SECONDS = 1.0
ANSWERS = 20_000
GOAL_END_US = 10.0  # the stream's end, on the loop
GOAL_SETTLE_US = 200.0  # the background task's share per answer


def measure(answers: int = ANSWERS) -> dict[str, float]:
    """Microseconds of CPU per chat: at its end, and settling it."""
    clock, inflight = Clock(), [SLOTS]
    ledger = EnergyLedger(
        GatewayMetrics(), {"home": "box"}, lambda _host: inflight[0], longest_answer=300,
        models=["m"], clock=clock, monotonic=clock,
    )  # fmt: skip
    joules, step = 0.0, ANSWER_SECONDS / SLOTS  # an answer ends (and another starts) each step
    signals = {"energy_total_joules": 0.0, "energy_since": 1.0, "idle_power_watts": 10.0}
    ledger.record("box", clock.now, signals)
    at_end = settling = 0.0
    next_snapshot = clock.now + SNAPSHOT_SECONDS
    for n in range(answers):
        clock.now += step
        while next_snapshot <= clock.now:
            joules += 190.0 * SNAPSHOT_SECONDS
            started = time.process_time()
            ledger.record("box", next_snapshot, signals | {"energy_total_joules": joules})
            settling += time.process_time() - started
            next_snapshot += SNAPSHOT_SECONDS
        began = clock.now - ANSWER_SECONDS
        record = ended(began, began + 0.3, {"input_tokens": 50, "output_tokens": TOKENS})
        started = time.process_time()
        ledger.answered("home", "m", record)
        at_end += time.process_time() - started
        if n == 100:  # warmed up: count from here
            at_end = settling = 0.0
    counted = answers - 101
    return {"at_end_us": at_end / counted * 1e6, "settling_us": settling / counted * 1e6}


def energy_goals(result: dict[str, float]) -> list[Goal]:
    """Issue 20's: attribution adds nothing measurable to the chat's path."""
    return [
        Goal(
            "energy per answer: the stream's end (on the loop), per chat",
            GOAL_END_US, result["at_end_us"], "µs",
            f"settled later in the probe watcher's task: {result['settling_us']:.0f} µs a chat",
        ),
        Goal(
            "energy per answer: settling its share (background task), per chat",
            GOAL_SETTLE_US, result["settling_us"], "µs",
            f"{SLOTS} answers at once, a snapshot a second",
        ),
    ]  # fmt: skip


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {GATEWAY_CPU})  # one core
    result = measure()
    print(
        f"energy per answer, CPU per chat: at the stream's end {result['at_end_us']:.1f} µs,"
        f" settling {result['settling_us']:.1f} µs"
    )


if __name__ == "__main__":
    main()
