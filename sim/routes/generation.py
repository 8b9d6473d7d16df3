"""The generation endpoints: OpenAI Responses and chat completions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, Response, post
from litestar.response import Stream

from sim.chat import build_chat_call, complete_chat, stream_chat
from sim.context import error_frame, refuse_overflow
from sim.errors import json_response, unknown_route_response
from sim.responses_request import build_call
from sim.responses_stream import complete_response, stream_response
from sim.routes.common import admit, event_stream, sim_state, unless_disconnected
from sim.schemas import ChatBody, ResponsesBody, decode_body

if TYPE_CHECKING:
    from sim.state import SimState


class GenerationController(Controller):
    """`POST /v1/responses` and `POST /v1/chat/completions`, streamed or not."""

    @post("/v1/responses", status_code=200)
    async def create_response(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """A response; `stream: true` sends Responses API events."""
        state = sim_state(request)
        if state.config.no_responses_api:
            # LM Studio before 0.3.29 (docs `1_developer/api-changelog.md`: "New
            # OpenAI-compatible endpoint: POST /v1/responses") answers it as an unknown path.
            state.counters.unknown_paths += 1
            return unknown_route_response(request, 200 if state.config.unknown_path_200 else 404)
        body = decode_body(_recorded(state, request.url.path, await request.body()), ResponsesBody)
        await _wake(state, body.model, body.ttl)
        call = build_call(state, body)
        refusal = refuse_overflow(state, call.plan.input_tokens)
        if refusal is not None:
            return _error_with_200(state, refusal, streamed=body.stream)
        place = admit(state)
        if body.stream:
            return event_stream(stream_response(state, call, place), place)
        return json_response(
            await unless_disconnected(request, complete_response(state, call, place))
        )

    @post("/v1/chat/completions", status_code=200)
    async def create_chat_completion(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """A chat completion; `stream: true` sends `chat.completion.chunk` frames."""
        state = sim_state(request)
        body = decode_body(_recorded(state, request.url.path, await request.body()), ChatBody)
        await _wake(state, body.model, body.ttl)
        call = build_chat_call(state, body)
        refusal = refuse_overflow(state, call.plan.input_tokens)
        if refusal is not None:
            return _error_with_200(state, refusal, streamed=body.stream)
        place = admit(state)
        if body.stream:
            return event_stream(stream_chat(state, call, place), place)
        return json_response(await unless_disconnected(request, complete_chat(state, call, place)))


def _recorded(state: SimState, path: str, raw: bytes) -> bytes:
    """Keep the body for `GET /_sim/requests`: a test can read what the model was sent."""
    state.record(path, raw)
    return raw


async def _wake(state: SimState, model_key: str | None, ttl: float | None) -> None:
    """With JIT, the requested model must be downloaded (else 400) and is loaded if asleep.

    Without JIT the sim ignores `model`, as LM Studio does with one model loaded
    (lmstudio-bug-tracker#619)."""
    if not state.config.jit:
        return
    await state.host.ensure_loaded(state.host.find(model_key), ttl)


def _error_with_200(state: SimState, body: dict[str, Any], *, streamed: bool) -> Response[Any]:
    """lmstudio-bug-tracker#2322: the overflow error with status 200 (one SSE frame if streamed)."""
    if not streamed:
        return json_response(body)

    async def frames() -> Any:
        yield error_frame(state, body)

    return Stream(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
