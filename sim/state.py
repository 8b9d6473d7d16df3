"""What the simulator remembers between requests: fault mode, counters, stored responses, tool
behaviour and the last request bodies (for tests to read what the model was sent)."""

from __future__ import annotations

import math
import random
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass

from sim.capacity import SlotPool
from sim.config import FaultMode, SimConfig, ToolBehaviour
from sim.model_host import ModelHost
from sim.power import PowerMeter

STORED_RESPONSES = 1000
RECORDED_REQUESTS = 16


@dataclass(slots=True)
class Counters:
    """Totals since start or the last `POST /_sim/reset`."""

    started: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    # Requests that got a slot and began prefill (not those that left the queue or were refused).
    reached_generation: int = 0
    unauthorized: int = 0
    overflows: int = 0
    unknown_paths: int = 0
    listings: int = 0  # model listings answered (/v1/models, /api/v0 and /api/v1/models)
    tool_calls: int = 0  # function calls the model finished making
    tool_outputs: int = 0  # function_call_output items received


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What a follow-up naming a response needs of it."""

    context_tokens: int  # the conversation up to and including that response
    call_ids: tuple[str, ...] = ()  # its function calls, which a function_call_output answers
    question: str = ""  # the user's last words in the conversation, for a call made again


class ResponseStore:
    """The last stored responses, so a follow-up's `previous_response_id` can resolve."""

    def __init__(self, capacity: int = STORED_RESPONSES) -> None:
        self._capacity = capacity
        self._responses: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, response_id: str, stored: StoredResponse) -> None:
        """Remember a finished response."""
        self._responses[response_id] = stored
        if len(self._responses) > self._capacity:
            self._responses.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        """A stored response, or None if unknown."""
        return self._responses.get(response_id)

    def __len__(self) -> int:
        return len(self._responses)


class SimState:
    """The one mutable object of a running simulator, kept on `app.state`."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.power = PowerMeter(
            idle_watts=config.idle_watts, watts_per_stream=config.watts_per_stream
        )
        self.pool = SlotPool(config.parallel, config.queue_limit, self.power.set_streams)
        self.store = ResponseStore()
        self.host = ModelHost(config, busy=lambda: self.active > 0)
        self.counters = Counters()
        self.active = 0
        self.mode = FaultMode.NO_MODEL if config.no_model else FaultMode.OK
        self.error_share = config.error_share
        self.tools = ToolBehaviour.from_config(config)
        # Raw bodies, decoded only when `GET /_sim/requests` asks: nothing on the hot path.
        self.requests: deque[tuple[str, bytes]] = deque(maxlen=RECORDED_REQUESTS)
        self._error_draws = 0
        self._random = random.Random(config.seed)  # noqa: S311 - filler text, nothing secret

    @property
    def model_loaded(self) -> bool:
        """The model is loaded in every mode but `no_model`, once loaded (at start unless JIT)."""
        llm = self.host.models[self.config.model]
        return self.mode is not FaultMode.NO_MODEL and self.host.is_loaded(llm)

    @property
    def slow_factor(self) -> float:
        """How many times longer prefill and decode take in the current mode."""
        return 10.0 if self.mode is FaultMode.SLOW else 1.0

    def set_mode(self, mode: FaultMode, error_share: float | None = None) -> None:
        """Switch fault mode; `error_share` applies to `error` mode."""
        self.mode = mode
        if error_share is not None:
            self.error_share = error_share
        self._error_draws = 0

    def should_fail(self) -> bool:
        """In `error` mode, fail exactly `error_share` of requests, evenly spread (no dice)."""
        if self.mode is not FaultMode.ERROR:
            return False
        before = math.floor(self._error_draws * self.error_share)
        self._error_draws += 1
        return math.floor(self._error_draws * self.error_share) > before

    def next_offset(self) -> int:
        """Where the next answer's filler starts: seeded, so runs repeat."""
        return self._random.randrange(1 << 16)

    def record(self, path: str, body: bytes) -> None:
        """Keep a generation request's body for `GET /_sim/requests`."""
        self.requests.append((path, body))

    def reset_counters(self) -> None:
        """Zero the totals and forget the recorded requests; live gauges (active, busy, queued)
        keep telling the truth."""
        self.counters = Counters()
        self.host.loads_started = 0
        self.requests.clear()

    def fault(self) -> dict[str, object]:
        """The fault state as `GET /_sim/fault` shows it."""
        return {
            "mode": self.mode.value,
            "error_share": self.error_share,
            "model_loaded": self.model_loaded,
        }

    def stats(self) -> dict[str, object]:
        """Counters and gauges as `GET /_sim/stats` shows them."""
        return {
            **asdict(self.counters),
            "active": self.active,
            "busy_slots": self.pool.busy,
            "queued": self.pool.queued,
            "reserved": self.pool.reserved,
            "slots": self.pool.slots,
            "queue_limit": self.pool.queue_limit,
            "stored_responses": len(self.store),
            "loads_started": self.host.loads_started,
            "loaded_instances": self.host.models[self.config.model].instances,
            **self.power.stats(),
            **self.fault(),
        }
