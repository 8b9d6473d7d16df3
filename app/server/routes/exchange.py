"""One admitted chat on its way through the model: what it holds (a breaker permit, an
in-flight lease, the tokens it reserved), its upstream call, and how it ends: a chat that never
reached the model spends none of its reservation, one that did spends its usage. A chat that
wakes a model asleep has the model's load time on top of its first-token budget, and ends the
wake for every replica when its first output comes (or when it fails before any)."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

import anyio
import msgspec
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from app.admission.decision import Conversation, Decision
from app.chat.tokens import estimate
from app.errors import ContextFull, UpstreamBusy, UpstreamError, UpstreamTimeout, VisitorsError
from app.telemetry.tracing import current_span, outgoing_headers, span_in_use, tracer
from app.upstream.answer_errors import CONTEXT_FULL_MESSAGE
from app.upstream.client import RESPONSES_PATH, open_stream
from app.upstream.relay import VISITORS, StreamRecord, relay, sse_frame
from app.upstream.whole_answer import read_whole, whole_usage

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from app.chat.request import ChatRequest
    from app.protection.breaker import Permit
    from app.rag.rounds import ToolLoop
    from app.server.chat_telemetry import Call
    from app.server.services import Services
    from app.upstream.client import StreamedAnswer, Timeouts
    from app.upstream.hosts import Host
    from app.upstream.relay import Dialect

_T = TypeVar("_T")

# Outcomes after which the upstream counts as failing, for the breaker.
UPSTREAM_FAILURES = frozenset({"upstream_error", "timeout"})
# The event before a hosted fallback's answer, so the widget can say who answered.
FALLBACK_MARKER = sse_frame(
    "llmgw.host",
    msgspec.json.encode(
        {"type": "llmgw.host", "fallback": True, "message": "Answered by the backup model."}
    ),
)
# Transcripts being saved after their stream's end (held, so the loop does not drop them).
_KEEPING: set[asyncio.Task[None]] = set()


@dataclass(slots=True)
class Exchange:
    """One admitted chat: what it holds (a breaker permit, a lease) and how it ends. `owner`
    is who may continue its conversation (a visitor's hashed id, or a key's name); `path`,
    `dialect` and `output_cap` say which API it speaks (the widget's, by default)."""

    call: Call
    host: Host
    permit: Permit
    decision: Decision
    owner: str
    path: str = RESPONSES_PATH
    dialect: Dialect = VISITORS
    output_cap: int = 0  # the answer's token cap; 0: LLMGW_MAX_OUTPUT_TOKENS
    record: StreamRecord = field(default_factory=lambda: StreamRecord(started=time.monotonic()))
    genai: trace.Span = field(default=trace.INVALID_SPAN)
    waking: bool = False  # this chat wakes the model, and the wake is not over yet
    payload: bytes = b""  # what goes to the host (a widget's chat: made for its host)
    turn: ChatRequest | None = None  # a widget's chat: its words, kept in its transcript
    rag: ToolLoop | None = None  # the answer's tool rounds, when it may search the posts
    prefix: list[bytes] = field(default_factory=list)  # events before the answer's (context)
    rag_reserved: int = 0  # what its reservation holds for reading the posts (app/rag/plan.py)

    def __post_init__(self) -> None:
        self.record.counts_text = self.decision.reservation is not None
        if not self.output_cap:
            self.output_cap = self.services.settings.max_output_tokens
        if self.turn is not None and self.services.transcripts is not None:
            self.record.keeps_text = self.services.settings.transcript_max_bytes
        self.waking = self.decision.waker
        if self.waking:
            self.host.monitor.waking = True

    @property
    def services(self) -> Services:
        return self.call.services

    @property
    def timeouts(self) -> Timeouts:
        """The budgets of this chat: the model's load comes first when it wakes it."""
        timeouts = self.services.timeouts
        if not self.decision.waker:
            return timeouts
        load = self.services.settings.model_load_timeout
        return replace(timeouts, first_token=load, total=timeouts.total + load)

    def stream(self, upstream: StreamedAnswer) -> AsyncGenerator[bytes, None]:
        """The visitor's event stream, relayed from the model's (over its tool rounds, when
        it may search the posts)."""
        if self.rag is not None:
            frames = self.rag.stream(upstream)
        else:
            frames = relay(
                upstream,
                self.timeouts,
                self.record,
                self.finish,
                self.started,
                dialect=self.dialect,
            )
        if self.prefix:
            frames = _prefixed(b"".join(self.prefix), frames)
        if self.host.fallback and self.dialect is VISITORS:
            frames = _prefixed(FALLBACK_MARKER, frames)
        return self._ending_the_wake(frames) if self.waking else frames

    async def _ending_the_wake(
        self, frames: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        async with aclosing(frames):
            async for frame in frames:
                if self.waking and self.record.first_token_at is not None:
                    await self.end_wake(woke=True)
                yield frame

    async def end_wake(self, *, woke: bool) -> None:
        """The model answered (or this chat failed before it did): over to everyone else."""
        if not self.waking:
            return
        self.waking = False
        services, monitor = self.services, self.host.monitor
        if woke:
            monitor.woke()
        else:
            monitor.waking = False
        # 'awake' until every replica's health check has seen the model loaded.
        awake = 2 * services.settings.health_interval + 1
        with anyio.CancelScope(shield=True):
            await services.limiter.wake_ended(woke=woke, awake_seconds=awake, host=self.host.name)

    async def check_room(self, input_tokens: int) -> None:
        """Refuse a follow-up whose answer cannot fit the model's loaded context, before the
        model sees it: the conversation's size on record, the new input and the answer's
        budget against the context length the model server reports."""
        services = self.services
        used, length = self.decision.conversation_tokens, self.host.monitor.context_length()
        if not used or length is None:
            return
        if used + input_tokens + self.output_cap <= length:
            return
        self.genai.end()
        await services.limiter.release(self.decision)
        self.host.breaker.give_back(self.permit)
        await self.end_wake(woke=False)
        raise ContextFull(CONTEXT_FULL_MESSAGE)

    async def abandon(self) -> None:
        """The visitor left before the stream opened: give back what was taken."""
        with anyio.CancelScope(shield=True):
            self.genai.end()
            await self.services.limiter.release(self.decision)
            self.host.breaker.give_back(self.permit)
            await self.end_wake(woke=False)

    async def open(self, payload: bytes) -> StreamedAnswer:
        """Open the upstream stream; on failure give back what was taken and say why."""
        return await self._guarded(lambda: self.send(payload))

    async def whole(self, payload: bytes, *, chat: bool) -> bytes:
        """The answer not streamed (a keyed client's `"stream": false`): the model server's
        JSON, read within the total deadline, settled from its usage like a stream's end."""
        record = self.record
        try:
            body = await self._guarded(lambda: self._read_whole(payload))
        except asyncio.CancelledError:  # the client left: the model server's answer is dropped
            record.outcome = "client_cancelled"
            with anyio.CancelScope(shield=True):
                self.started()
                await self.finish(record)
            raise
        record.first_token_at = time.monotonic()  # the whole answer is its first output
        record.response_id, record.usage = whole_usage(body, chat=chat)
        self.started()
        await self.finish(record)
        return body

    async def _read_whole(self, payload: bytes) -> bytes:
        with current_span("POST", kind=SpanKind.CLIENT) as http_span:
            http_span.set_attribute("http.request.method", "POST")
            async with asyncio.timeout(self.timeouts.total):
                return await read_whole(
                    self.host.client, self.path, payload, outgoing_headers(http_span)
                )

    async def _guarded(self, send: Callable[[], Awaitable[_T]]) -> _T:
        """Run the upstream call under the chat's span; on failure give back what was taken
        and say why."""
        services = self.services
        model = self.host.model
        if self.call.tracing:  # off: no span, not even the no-op tracer's (it costs a lookup)
            self.genai = tracer().start_span(
                f"chat {model}",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "llmgw.host": self.host.name,
                },
            )
        try:
            with span_in_use(self.genai):
                return await send()
        except (VisitorsError, UpstreamBusy) as exc:  # the request's fault, or a busy host
            self.genai.set_status(StatusCode.ERROR, exc.code)
            self.genai.end()
            await services.limiter.release(self.decision)
            self.host.breaker.give_back(self.permit)
            await self.end_wake(woke=False)  # another request may try; the load goes on
            raise
        except (UpstreamError, TimeoutError) as exc:
            self.genai.set_status(StatusCode.ERROR, type(exc).__name__)
            self.genai.end()
            await services.limiter.release(self.decision)
            self.host.breaker.failure(self.permit)
            await self.end_wake(woke=False)
            if isinstance(exc, UpstreamError):
                if exc.outage is not None:
                    self.host.monitor.observe(exc.outage)
                raise
            raise UpstreamTimeout("the model server did not answer in time") from None

    async def send(self, payload: bytes) -> StreamedAnswer:
        """POST the payload to the host and return its stream once its head is in (within the
        first token's budget); failures are the caller's to settle."""
        timeouts = self.timeouts
        with current_span("POST", kind=SpanKind.CLIENT) as http_span:
            http_span.set_attribute("http.request.method", "POST")
            async with asyncio.timeout(min(timeouts.first_token, timeouts.total)):
                response = await open_stream(
                    self.host.client, payload, outgoing_headers(http_span), self.path
                )
            http_span.set_attribute("http.response.status_code", response.status_code)
            return response

    def started(self) -> None:
        """The body began to flow."""
        self.services.metrics.stream_started()
        self.services.metrics.lane_stream(self.call.lane, 1)
        self.services.metrics.host_stream(self.host.name, 1)

    async def finish(self, record: StreamRecord) -> None:
        """Give back the lease, tell the breaker and the monitor, record what happened."""
        services = self.services
        conversation = None  # only an answered response can be continued
        answered = record.usage is not None and self.path == RESPONSES_PATH
        host = self.host
        if answered and record.response_id is not None:
            size = record.usage_tokens
            conversation = Conversation(record.response_id, self.owner, size, host.name)
        await services.limiter.release(self.decision, conversation, self._spent(record))
        await self.end_wake(woke=record.first_token_at is not None)
        if record.outcome in UPSTREAM_FAILURES:
            host.breaker.failure(self.permit)
        elif record.first_token_at is not None:
            host.breaker.success(self.permit)
            host.monitor.observe(None)
            host.ttft.observe(record.first_token_at - record.started, time.monotonic())
        else:
            host.breaker.give_back(self.permit)
        if host.fallback and record.usage is not None:
            services.metrics.fallback_tokens(record.usage_tokens)
        self._record(record)
        services.energy.answered(host.name, host.model, record)
        self.call.done(record.outcome, 200, record)
        if conversation is not None and self.turn is not None:
            self._keep_transcript(conversation.response_id, record)

    def _keep_transcript(self, response_id: str, record: StreamRecord) -> None:
        """Keep the turn, off the stream's path: the next turn may need it on another host."""
        transcripts, turn = self.services.transcripts, self.turn
        if transcripts is None or turn is None:
            return
        words = turn.input
        messages = (
            [{"role": "user", "content": words}]
            if isinstance(words, str)
            else [{"role": m.role, "content": m.content} for m in words]
        )
        saving = transcripts.save(
            response_id, turn.previous_response_id, messages, record.answer_text
        )
        task = asyncio.get_running_loop().create_task(saving)
        _KEEPING.add(task)
        task.add_done_callback(_KEEPING.discard)

    def _spent(self, record: StreamRecord) -> int:
        """The tokens this chat cost: the model's own usage; without it (the visitor left, or
        the stream broke), the input reserved and the output relayed so far, estimated from
        its text; nothing when the model failed before any output."""
        reservation = self.decision.reservation
        if reservation is None:
            return 0
        if record.usage is not None:
            return record.usage_tokens + record.earlier_tokens
        if record.first_token_at is None and record.outcome != "client_cancelled":
            return record.earlier_tokens
        reserved_input = reservation.tokens - self.output_cap - self.rag_reserved
        return max(reserved_input, 0) + estimate(record.text_chars) + record.earlier_tokens

    def _record(self, record: StreamRecord) -> None:
        metrics, now, trace_id = self.services.metrics, time.monotonic(), self.call.trace_id
        metrics.stream_ended()
        metrics.lane_stream(self.call.lane, -1)
        metrics.host_stream(self.host.name, -1)
        usage = record.usage or {}
        output = int(usage.get("output_tokens") or 0)
        details = usage.get("output_tokens_details") or {}
        self._end_genai_span(record, output)
        if record.first_token_at is None:
            return
        metrics.first_token(record.first_token_at - record.started, trace_id)
        metrics.host_first_token(self.host.name, record.first_token_at - record.started)
        metrics.lane_first_token(self.call.lane, record.first_token_at - record.started)
        metrics.time_per_output_token(now - record.first_token_at, output, trace_id)
        metrics.tokens(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=output,
            reasoning_tokens=int(details.get("reasoning_tokens") or 0),
        )
        metrics.lane_tokens(
            self.call.lane,
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=output,
        )

    def _end_genai_span(self, record: StreamRecord, output_tokens: int) -> None:
        span = self.genai
        if span is trace.INVALID_SPAN:  # not tracing
            return
        if record.response_id:
            span.set_attribute("gen_ai.response.id", record.response_id)
        if record.usage:
            span.set_attribute(
                "gen_ai.usage.input_tokens", int(record.usage.get("input_tokens") or 0)
            )
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if record.ttft is not None:
            span.set_attribute("gen_ai.response.time_to_first_chunk", record.ttft)
        if record.outcome not in ("ok", "client_cancelled"):
            span.set_status(StatusCode.ERROR, record.outcome)
        span.end()


async def _prefixed(
    prefix: bytes, frames: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    """The answer after the events that come first: the posts searched and found, the
    fallback's marker (the widget shows who answered)."""
    async with aclosing(frames):
        first = True
        async for frame in frames:
            if first:  # once the relay's first frame is in: a failure before it stays a 5xx
                yield prefix
                first = False
            yield frame
