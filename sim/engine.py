"""One generation's way through the waiting line, a slot, prefill and paced decoding."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from sim.config import FaultMode, SimConfig
from sim.context import exhausted, tokens_before_exhaustion
from sim.text import Script, fixed_script, write_script

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from types import TracebackType

    from sim.capacity import Reservation
    from sim.state import SimState

# No request may ask for more than the simulated model's context.
MAX_CONTEXT_TOKENS = 32768


@dataclass(frozen=True, slots=True)
class Plan:
    """What a request will cost: input tokens to prefill, and the output it will decode."""

    input_tokens: int
    script: Script
    # Tokens decoded before the context fills (`--overflow mid-generation`); None: no limit.
    fail_after: int | None = None

    @property
    def output_tokens(self) -> int:
        """Reasoning plus answer tokens."""
        return len(self.script.reasoning) + len(self.script.answer)


def make_plan(
    state: SimState,
    prompt: str,
    input_tokens: int,
    limit: int | None,
    *,
    reasoning: bool,
    opening: Sequence[str] | None = None,
    fixed: tuple[str, ...] | None = None,
) -> Plan:
    """Size the output: the natural length (the configured one, or that of the `fixed` pieces,
    e.g. a function call's arguments), cut by the request's limit if it is lower."""
    natural = None if fixed is None else len(fixed)
    config = state.config
    reasoning_tokens, answer_tokens = _split_output(
        config, limit, reasoning=reasoning, natural=natural
    )
    offset = state.next_offset()
    if fixed is None:
        script = write_script(prompt, reasoning_tokens, answer_tokens, offset, opening)
    else:
        script = fixed_script(fixed, reasoning_tokens, answer_tokens)
    if state.config.context_length is None:
        input_tokens = min(input_tokens, MAX_CONTEXT_TOKENS)  # today's sim: never overflows
    output_tokens = len(script.reasoning) + len(script.answer)
    fail_after = tokens_before_exhaustion(state, input_tokens, output_tokens)
    return Plan(input_tokens=input_tokens, script=script, fail_after=fail_after)


def is_cut(
    config: SimConfig, limit: int | None, *, reasoning: bool, natural: int | None = None
) -> bool:
    """Whether a limit stops the generation before the model would stop by itself after
    `natural` answer tokens (None: the configured length)."""
    answer = config.output_tokens if natural is None else natural
    return limit is not None and 0 < limit < answer + (config.reasoning_tokens if reasoning else 0)


def _split_output(
    config: SimConfig, limit: int | None, *, reasoning: bool, natural: int | None
) -> tuple[int, int]:
    # Like a real model, it stops by itself after its natural length; a lower limit cuts it.
    reasoning_tokens = config.reasoning_tokens if reasoning else 0
    if not is_cut(config, limit, reasoning=reasoning, natural=natural):
        return reasoning_tokens, config.output_tokens if natural is None else natural
    total = min(limit or 0, MAX_CONTEXT_TOKENS)
    if reasoning and config.reasoning_eats_budget:
        # A reasoning model can spend the whole max_output_tokens before any visible text
        # (OpenAI's reasoning guide, "Allocating space for reasoning").
        return total, 0
    reasoning_tokens = min(reasoning_tokens, total // 2)  # the answer keeps at least half
    return reasoning_tokens, total - reasoning_tokens


class Generation:
    """Async context: waits for a slot on entry, frees it on exit and counts how it ended."""

    def __init__(self, state: SimState, plan: Plan, reservation: Reservation) -> None:
        self._state = state
        self._plan = plan
        self._reservation = reservation
        self._emitted = 0
        self._stall_at = plan.output_tokens // 2
        self._finished = False
        self._prefill_ends: float | None = None  # loop time a cancelled prefill would end

    async def __aenter__(self) -> Self:
        self._reservation.release()  # from now on the pool counts this request itself
        counters = self._state.counters
        counters.started += 1
        counters.input_tokens += self._plan.input_tokens
        self._state.active += 1
        try:
            await self._state.pool.acquire()
        except BaseException:
            self._count_end(cancelled=True)  # left the line before reaching a slot
            raise
        counters.reached_generation += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Nothing here awaits, so a cancellation cannot cut the release short: it is shielded.
        if self._prefill_ends is None:
            self._state.pool.release()
        else:
            self._state.pool.release_at(self._prefill_ends)
        self._state.host.touch(self._state.host.find(self._state.config.model))
        self._count_end(cancelled=exc is None or _is_cancellation(exc))

    async def prefill(self) -> None:
        """Read the input: input tokens / prefill rate, slower in `slow` mode."""
        rate = self._state.config.prefill_rate
        seconds = self._plan.input_tokens / rate * self._state.slow_factor
        ends = asyncio.get_running_loop().time() + seconds
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if self._state.config.prefill_survives_cancel:
                # LM Studio does not interrupt prompt processing (lmstudio-bug-tracker#597; a
                # maintainer in #108: "We currently do not support interrupting prompt
                # processing"): the slot stays busy until the prefill would have ended.
                self._prefill_ends = ends
            raise

    async def next_token(self) -> None:
        """Wait until the next token is decoded; in `stall` mode, halfway, wait forever."""
        if self._emitted == self._stall_at and self._state.mode is FaultMode.STALL:
            await asyncio.Event().wait()  # until the client leaves and cancels us
        state = self._state
        if self._emitted == self._plan.fail_after:
            raise exhausted(state)
        await asyncio.sleep(state.pool.slowdown() * state.slow_factor / state.config.decode_rate)
        self._emitted += 1
        state.counters.output_tokens += 1

    def finish(self) -> None:
        """Mark every token as produced: the generation counts as completed."""
        self._finished = True

    def _count_end(self, *, cancelled: bool) -> None:
        self._state.active -= 1
        counters = self._state.counters
        if self._finished:
            counters.completed += 1
        elif cancelled:
            counters.cancelled += 1
        else:
            counters.failed += 1


async def paced(
    generation: Generation, pieces: tuple[str, ...], encode: Callable[[str], bytes]
) -> AsyncIterator[bytes]:
    """One encoded frame per piece, each as soon as its token is decoded."""
    for piece in pieces:
        await generation.next_token()
        yield encode(piece)


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError | GeneratorExit)


async def generate_all(state: SimState, plan: Plan, reservation: Reservation) -> None:
    """Run a whole generation without streaming it (the non-streaming endpoints)."""
    async with Generation(state, plan, reservation) as generation:
        await generation.prefill()
        for _ in range(plan.output_tokens):
            await generation.next_token()
        generation.finish()
