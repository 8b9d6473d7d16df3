"""A small SSE client for the tests: post a chat and see what arrives, and when."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Received:
    """A chat as the browser saw it: status, headers, events and their arrival times."""

    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    json: Any = None

    def types(self) -> list[str]:
        return [str(event.get("type")) for event in self.events]

    def text(self) -> str:
        deltas = (e for e in self.events if e.get("type") == "response.output_text.delta")
        return "".join(str(e["delta"]) for e in deltas)

    def first_time(self, event_type: str) -> float:
        return next(
            t for t, e in zip(self.times, self.events, strict=True) if e["type"] == event_type
        )


def chat(
    url: str, body: object = None, *, headers: dict[str, str] | None = None, timeout: float = 30
) -> Received:
    """POST /api/chat and read the whole answer (events or a JSON error)."""
    started = time.monotonic()
    payload = {"input": "Hello there"} if body is None else body
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("POST", f"{url}/api/chat", json=payload, headers=headers) as response,
    ):
        received = Received(response.status_code, response.headers)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
            received.json = response.json()
            return received
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.events.append(json.loads(line[6:]))
                received.times.append(time.monotonic() - started)
    return received


async def chat_status(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> int:
    """Post one chat, read it to the end, and return only the status."""
    async with client.stream(
        "POST", f"{url}/api/chat", json={"input": "hi"}, headers=headers
    ) as response:
        await response.aread()
        return response.status_code
