"""A chat while the model is asleep. Its stream opens at once with a status event, so the
visitor sees "Waking the model…" while LM Studio loads it (10 to 30 s or more). The one request
the admission script chose wakes the model; the others wait in the waiting room, for as long as
a load may take (LLMGW_MODEL_LOAD_TIMEOUT), and stream as soon as its first output comes. A
refusal after the stream began is an error event, as any failure mid-stream is."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from app.errors import GatewayError
from app.server.chat_telemetry import outcome_of
from app.server.routes.routing import routed_exchange
from app.upstream.relay import error_frame, sse_frame

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from app.admission.decision import Decision
    from app.chat.request import ChatRequest
    from app.chat.visitor import Visitor
    from app.server.chat_telemetry import Call
    from app.server.routes.exchange import Exchange
    from app.upstream.hosts import Offer

STATUS_EVENT = "llmgw.status"
WAKING_MESSAGE = "Waking the model…"
WAIT_REFUSALS = {  # how a wait that ends without a place is told, by the last decision's limit
    "visitor": ("rate_limited", "your limit is spent, try again in a minute"),
    "global": ("rate_limited", "everyone's limit is spent, try again in a minute"),
    "tokens": ("rate_limited", "the token budget is spent, try again in a minute"),
}
TIMED_OUT = ("model_waking", "the model is still waking up, try again in a moment")


def status_frame(state: str, message: str) -> bytes:
    """The gateway's own status event, before any output of the model."""
    body = {"type": STATUS_EVENT, "state": state, "message": message}
    return sse_frame(STATUS_EVENT, msgspec.json.encode(body))


@dataclass(slots=True)
class WakingChat:
    """One chat that meets the model asleep: the waker itself, or one that waits for it."""

    call: Call
    offer: Offer
    visitor: Visitor
    request: ChatRequest
    decision: Decision
    attempt: Callable[[], Awaitable[Decision]]

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The status event, the wait (when another wakes the model), then the answer."""
        yield status_frame("waking", WAKING_MESSAGE)
        exchange: Exchange | None = None
        told = False
        try:
            decision = await self._admitted()
            if not decision.admitted:
                told = True
                yield self._refused(decision)
                return
            try:
                exchange = await routed_exchange(
                    self.call, self.offer, decision, self.visitor.owner, self.request
                )
            except GatewayError as exc:  # its conversation cannot move: given back already
                told = True
                self.call.done(outcome_of(exc), 200)
                yield error_frame(exc.code, exc.message)
                return
            async with aclosing(self._answer(exchange)) as frames:
                async for frame in frames:
                    yield frame
        finally:
            if exchange is None:  # never admitted, or the visitor left while waiting
                self.offer.give_back()
                if not told:
                    self.call.done("client_cancelled", 200)

    async def _admitted(self) -> Decision:
        if self.decision.admitted:
            return self.decision
        services = self.call.services
        wait = services.settings.model_load_timeout
        decision, waited = await services.waiting_room.admit(self.attempt, self.decision, wait)
        if waited is not None:
            services.metrics.queue_wait(waited, admitted=decision.admitted)
        return decision

    async def _answer(self, exchange: Exchange) -> AsyncGenerator[bytes, None]:
        try:
            await exchange.check_room(self.request.estimated_tokens())
            upstream = await exchange.open(exchange.payload)
        except GatewayError as exc:  # what was taken is given back already
            self.call.done(outcome_of(exc), 200)
            yield error_frame(exc.code, exc.message)
            return
        except BaseException:  # the visitor left during the load
            await exchange.abandon()
            self.call.done("client_cancelled", 200)
            raise
        async with aclosing(exchange.stream(upstream)) as frames:
            async for frame in frames:
                yield frame

    def _refused(self, decision: Decision) -> bytes:
        code, message = WAIT_REFUSALS.get(str(decision.limit), TIMED_OUT)
        self.call.done(f"rate_limited_{decision.limit}" if code == "rate_limited" else "shed", 200)
        return error_frame(code, message)
