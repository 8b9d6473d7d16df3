"""An answer with tool rounds: the model calls `search_posts`, the gateway runs the search and
sends the passages back (`function_call_output` with the call's id, on `previous_response_id`),
and relays the model's continued answer, until it answers in text or the rounds run out.

The visitor sees one stream: the model's calls are not relayed (nor a tool round's
`response.completed`, nor a later round's `response.created`); each search shows as a
`posts.searched` event with its query, then a `posts.sources` event with the posts it found
(each post once per answer); then the answer. After `LLMGW_RAG_MAX_ROUNDS` searches the last
round is sent with `tool_choice: "none"` (the tools still offered, so the model server keeps
the conversation's prompt prefix and its cache); a model calling anyway ends the answer with a
`tool_rounds` error. Each round is one upstream request under the answer's total deadline;
its tokens are spent with the answer's (`StreamRecord.earlier_tokens`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from opentelemetry.trace import SpanKind, StatusCode

from app.chat.tokens import estimate
from app.errors import GatewayError
from app.rag import tool
from app.telemetry.tracing import span_in_use, tracer
from app.upstream.relay import (
    END,
    END_EVENTS,
    VISITORS,
    StreamRecord,
    count_event,
    rebuilt,
    relay,
    sse_frame,
    typed_event,
)
from app.upstream.sse import EVENT_PREFIX, parse_block, usual_shape

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from app.posts.index import PostsIndex
    from app.posts.records import Passage
    from app.server.routes.exchange import Exchange
    from app.upstream.client import StreamedAnswer
    from app.upstream.relay import Dialect

MODE = "tools"
MAX_CALLS_PER_ROUND = 4  # more calls in one round get a tool error each
_HIDDEN = frozenset(
    {"response.function_call_arguments.delta", "response.function_call_arguments.done"}
)
_ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done"})
_OPENING = frozenset({"response.created", "response.in_progress"})
# Events of the usual shape passed without a look: everything but these.
_LOOKED_AT = frozenset({kind.encode() for kind in _HIDDEN | _ITEM_EVENTS | _OPENING | END_EVENTS})


class FunctionCall(msgspec.Struct):
    """A function call item, as LM Studio streams it and lists it in the response's output."""

    type: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class _ItemEvent(msgspec.Struct):
    item: FunctionCall = msgspec.field(default_factory=FunctionCall)


class _Output(msgspec.Struct):
    output: list[FunctionCall] = msgspec.field(default_factory=list)


class _Ended(msgspec.Struct):
    response: _Output = msgspec.field(default_factory=_Output)


_item_event = msgspec.json.Decoder(_ItemEvent)
_ended = msgspec.json.Decoder(_Ended)
_encode = msgspec.json.Encoder().encode


class ToolRound:
    """The client's dialect for one round: the `inner` dialect's events (the widget's, or a
    keyed client's as they came) without the model's function calls, which are collected in
    `calls`; a round that called ends without its `response.completed` reaching the client.
    `first`: the answer's opening events are still owed (see `owes_opening`); otherwise this
    round's are not relayed."""

    def __init__(self, *, first: bool, inner: Dialect = VISITORS) -> None:
        self.first = first
        self.inner = inner
        self.held: list[bytes] = []  # the opening events, held (see `owes_opening`)
        self.opened = False  # the held opening events went on
        self.calls: list[FunctionCall] = []
        self.failure = b""  # the error event when this round could not be opened

    def error_frame(self, code: str, message: str) -> bytes:
        return self.inner.error_frame(code, message)

    def translate(self, blocks: list[bytes], record: StreamRecord) -> tuple[bytes, str | None]:
        kept: list[bytes] = []
        for block in blocks:
            end = usual_shape(block)
            if end > 0 and block[len(EVENT_PREFIX) : end] not in _LOOKED_AT:
                self._release(kept)
                kept.append(block)  # a text delta and the like: the relay passes it as it came
                continue
            event = parse_block(block)
            if event is None:
                continue
            if event.event == "message":
                event = typed_event(event)
            kind, data = event.event, event.raw
            if kind in _HIDDEN or (kind in _ITEM_EVENTS and self._is_call(kind, data)):
                count_event(kind, record, data)
            elif kind in _OPENING and self.owes_opening:
                self.held.append(block)  # until the round shows whether it answers or calls
            elif kind in _OPENING:
                count_event(kind, record, data)
                rebuilt(kind, data, record)  # the round's response id
            elif kind in END_EVENTS and self._called(data):
                return self._called_and_ended(kept, kind, data, record), END
            else:
                self._release(kept)
                kept.append(block)
        return self.inner.translate(kept, record)

    def _called_and_ended(
        self, kept: list[bytes], kind: str, data: bytes, record: StreamRecord
    ) -> bytes:
        """The frames before the end of a round that called; the end itself (and an opening
        held: it is not the answer's) only tell the record the round's id and usage."""
        frames, _ = self.inner.translate(kept, record)
        for held in self.held:
            opening = parse_block(held)
            if opening is not None:
                count_event(opening.event, record, opening.raw)
                rebuilt(opening.event, opening.raw, record)
        self.held.clear()
        count_event(kind, record, data)
        rebuilt(kind, data, record)
        return frames

    @property
    def owes_opening(self) -> bool:
        """Whether the answer's opening events (`response.created`, `.in_progress`) are still
        to reach the client: they are held until the round shows output other than a call, so
        that the client's response is the one that answers (the `openai` SDK's stream refuses
        a response whose id changes between `created` and `completed`)."""
        return self.first and not self.opened

    def _release(self, kept: list[bytes]) -> None:
        if self.owes_opening:
            kept.extend(self.held)
            self.held.clear()
            self.opened = True

    def _is_call(self, kind: str, data: bytes) -> bool:
        if b'"function_call"' not in data:
            return False
        try:
            item = _item_event.decode(data).item
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        if item.type != "function_call":
            return False
        if kind == "response.output_item.done":
            self._add(item)
        return True

    def _called(self, data: bytes) -> bool:
        """Whether the round ended with calls to run (the response's output lists them too)."""
        if b'"function_call"' in data:
            try:
                output = _ended.decode(data).response.output
            except (msgspec.DecodeError, msgspec.ValidationError):
                output = []
            for item in output:
                if item.type == "function_call":
                    self._add(item)
        return bool(self.calls)

    def _add(self, item: FunctionCall) -> None:
        if all(call.call_id != item.call_id for call in self.calls):
            self.calls.append(item)


@dataclass(slots=True)
class _Between:
    payload: bytes | None = None  # the next round's request; None: no next round


@dataclass(slots=True)
class ToolLoop:
    """One answer's rounds on its exchange, with the posts' index to search."""

    exchange: Exchange
    posts: PostsIndex
    events: bool = True  # the `posts.*` events (the widget's; not a keyed client's stream)
    searched: int = 0  # searches run (the rounds that called)
    seen: set[str] = field(default_factory=set)  # posts already in `posts.sources`

    async def stream(self, upstream: StreamedAnswer) -> AsyncGenerator[bytes, None]:
        """The visitor's stream over every round; runs the exchange's `started` and `finish`
        exactly once, `finish` shielded from cancellation."""
        exchange = self.exchange
        record = exchange.record
        exchange.started()
        current: StreamedAnswer | None = upstream
        round_started: float | None = None
        dialect = ToolRound(first=True, inner=exchange.dialect)
        try:
            while current is not None:
                frames = relay(
                    current, exchange.timeouts, record, dialect=dialect, round_started=round_started
                )
                current = None
                async for frame in frames:
                    yield frame
                if not dialect.calls or record.outcome != "ok" or record.usage is None:
                    break
                between = _Between()
                async for frame in self._between(dialect, between):
                    yield frame
                if between.payload is None:
                    break
                round_started = time.monotonic()
                dialect = ToolRound(first=dialect.owes_opening, inner=exchange.dialect)
                current = await self._open(between.payload, dialect)
                if current is None:
                    yield dialect.failure
        except asyncio.CancelledError:
            record.outcome = "client_cancelled"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if current is not None:
                    await current.aclose()
                metrics = exchange.services.metrics
                metrics.rag_answer(MODE, self.searched, sourced=bool(self.seen))
                await exchange.finish(record)

    async def _between(self, dialect: ToolRound, between: _Between) -> AsyncGenerator[bytes, None]:
        """After a round that called: run its calls (yielding the visitor's events) and set
        the next round's request in `between`; none when the rounds are spent."""
        record = self.exchange.record
        if self.searched >= self.exchange.services.settings.rag_max_rounds:
            self.exchange.services.metrics.rag_tool_call("over_rounds")  # after tool_choice none
            record.outcome = "tool_rounds"
            message = "the model kept searching the posts instead of answering"
            yield dialect.error_frame("tool_rounds", message)
            return
        self.searched += 1
        record.earlier_tokens += record.usage_tokens
        outputs: list[dict[str, Any]] = []
        for index, call in enumerate(dialect.calls):
            async for frame in self._run(call, index, outputs):
                if self.events:
                    yield frame
        between.payload = self._next_round(record.response_id, outputs)
        record.usage, record.incomplete = None, False

    async def _open(self, payload: bytes, dialect: ToolRound) -> StreamedAnswer | None:
        """The next round's stream; None when it failed to open (the error event is then in
        `dialect.failure`)."""
        exchange = self.exchange
        record = exchange.record
        try:
            with span_in_use(exchange.genai):
                return await exchange.send(payload)
        except GatewayError as exc:
            record.outcome = "upstream_error"
            dialect.failure = dialect.error_frame("upstream_failed", exc.message)
        except TimeoutError:
            record.outcome = "timeout"
            message = "the model did not start answering in time"
            dialect.failure = dialect.error_frame("first_token_timeout", message)
        return None

    def _next_round(self, response_id: str | None, outputs: list[dict[str, Any]]) -> bytes:
        """The follow-up request: the outputs on the round's response, the same settings and
        tools; after the last search, with `tool_choice: "none"`."""
        body = msgspec.json.decode(self.exchange.payload)
        body["input"] = outputs
        body["previous_response_id"] = response_id
        if self.searched >= self.exchange.services.settings.rag_max_rounds:
            body["tool_choice"] = "none"
        return _encode(body)

    async def _run(
        self, call: FunctionCall, index: int, outputs: list[dict[str, Any]]
    ) -> AsyncGenerator[bytes, None]:
        """Run one call, its output for the model added to `outputs`; the visitor's events as
        they come (`posts.searched` before the search, `posts.sources` after it)."""
        metrics = self.exchange.services.metrics

        def answer(output: str) -> None:
            outputs.append(
                {"type": "function_call_output", "call_id": call.call_id, "output": output}
            )

        checked = tool.check_call(call.name, call.arguments)
        if checked.query is None:
            metrics.rag_tool_call(checked.outcome)
            answer(tool.error_output(checked.error))
            return
        if index >= MAX_CALLS_PER_ROUND:
            metrics.rag_tool_call("invalid_arguments")
            answer(tool.error_output(f"at most {MAX_CALLS_PER_ROUND} searches at once"))
            return
        yield searched_frame(checked.query)
        passages = await self._search(checked.query, call.call_id)
        if passages is None:
            metrics.rag_tool_call("failed")
            answer(tool.error_output("the search failed: answer without it"))
            return
        metrics.rag_tool_call("ok" if passages else "no_results")
        answer(tool.quoted(passages))
        found = tool.sources(passages, self.seen)
        if found:
            yield sources_frame(found)

    async def _search(self, query: str, call_id: str | None) -> list[Passage] | None:
        """The passages for `query` under an `execute_tool` span; None when the search failed."""
        exchange = self.exchange
        return await search_posts(
            exchange, self.posts, query, MODE, call_id=call_id, span_parent=exchange.genai
        )


async def search_posts(
    exchange: Exchange,
    posts: PostsIndex,
    query: str,
    mode: str,
    *,
    call_id: str | None = None,
    span_parent: Any = None,
) -> list[Passage] | None:
    """Search the posts for one answer, measured and traced (GenAI `execute_tool`)."""
    services = exchange.services
    settings = services.settings
    span = None
    if exchange.call.tracing:
        with span_in_use(span_parent or exchange.call.span):
            span = tracer().start_span(
                f"execute_tool {tool.NAME}",
                kind=SpanKind.INTERNAL,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool.NAME,
                    "gen_ai.tool.type": "function",
                    "gen_ai.tool.call.id": call_id or "",
                    "llmgw.rag.mode": mode,
                },
            )
    began = time.perf_counter()
    try:
        passages = await posts.search(
            query, limit=settings.rag_passages, max_tokens=settings.rag_max_tokens
        )
    except Exception as exc:
        if span is not None:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            span.end()
        return None
    seconds = time.perf_counter() - began
    tokens = sum(estimate(len(passage.text)) for passage in passages)
    services.metrics.rag_search(seconds, len(passages), tokens, mode)
    if span is not None:
        span.set_attribute("llmgw.rag.passages", len(passages))
        span.end()
    return passages


def searched_frame(query: str) -> bytes:
    """The visitor's event for a search about to run."""
    return sse_frame("posts.searched", _encode({"type": "posts.searched", "query": query}))


def sources_frame(found: list[dict[str, str]]) -> bytes:
    """The visitor's event for the posts a search found."""
    return sse_frame("posts.sources", _encode({"type": "posts.sources", "sources": found}))
