"""The downloaded models, which of them are loaded, just-in-time loading and the idle TTL.

LM Studio (docs `1_developer/0_core/ttl-and-auto-evict.md`): with JIT loading on, "the first
request to a model will load it into memory"; a JIT-loaded model unloads once it has been idle for
its TTL ("By default, JIT-loaded models have a TTL of 60 minutes"), and a request's `ttl` field
sets that TTL "if it is JIT loaded". Models loaded otherwise (`lms load`, the load endpoint) have
no TTL. A model is idle while it does no work, so the clock restarts when a request ends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sim.config import EMBEDDING_MODEL, SimConfig
from sim.errors import ModelNotFound

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(slots=True)
class DownloadedModel:
    """One model on disk, and its loaded instances (LM Studio names extra ones `key:2`, ...)."""

    key: str
    kind: str  # "llm" or "embedding"
    instances: int = 0
    jit_loaded: bool = False
    ttl: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    loading: asyncio.Task[None] | None = None

    def instance_ids(self) -> list[str]:
        """`key`, then `key:2`, `key:3`: extra copies as lmstudio-bug-tracker#619 shows them."""
        return [self.key if n == 1 else f"{self.key}:{n}" for n in range(1, self.instances + 1)]


class ModelHost:
    """Loads and unloads the downloaded models; `busy()` says whether any generation runs."""

    def __init__(self, config: SimConfig, busy: Callable[[], bool]) -> None:
        self._config = config
        self._busy = busy
        llm = DownloadedModel(config.model, "llm", instances=0 if config.jit else 1)
        self.models = {llm.key: llm}
        if config.embedding_model:
            self.models[EMBEDDING_MODEL] = DownloadedModel(EMBEDDING_MODEL, "embedding")
        self.loads_started = 0
        self._loads: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def find(self, key: str | None) -> DownloadedModel:
        """The model a request names (none named: the configured one); 400 if not downloaded."""
        model = self.models.get(key or self._config.model)
        if model is None:
            raise ModelNotFound(key or "", list(self.models))
        return model

    def is_loaded(self, model: DownloadedModel) -> bool:
        """Whether it has an instance, unloading it first if its idle TTL has run out."""
        if model.instances and model.jit_loaded and self._expired(model):
            model.instances, model.jit_loaded = 0, False
        return model.instances > 0

    def _expired(self, model: DownloadedModel) -> bool:
        idle = time.monotonic() - model.last_used
        return model.ttl is not None and not self._busy() and idle > model.ttl

    def touch(self, model: DownloadedModel) -> None:
        """The model did some work: its idle clock starts again."""
        model.last_used = time.monotonic()

    async def ensure_loaded(self, model: DownloadedModel, ttl: float | None) -> None:
        """Load just in time; requests during a load wait for that same load."""
        if self.is_loaded(model):
            self.touch(model)
            return
        if self._config.duplicate_jit_loads:
            # lmstudio-bug-tracker#1751: requests that arrive while no instance is loaded each
            # start an instance of their own.
            await asyncio.shield(self._start_load(model, jit=True, ttl=ttl))
            return
        if model.loading is None or model.loading.done():
            model.loading = self._start_load(model, jit=True, ttl=ttl)
        await asyncio.shield(model.loading)  # a client that leaves does not stop the load

    async def load(self, model: DownloadedModel) -> float:
        """`POST /api/v1/models/load`: load an instance with no TTL; returns the seconds taken."""
        started = time.monotonic()
        if not self.is_loaded(model):
            await asyncio.shield(self._start_load(model, jit=False, ttl=None))
        return time.monotonic() - started

    def _start_load(
        self, model: DownloadedModel, *, jit: bool, ttl: float | None
    ) -> asyncio.Task[None]:
        self.loads_started += 1
        task = asyncio.get_running_loop().create_task(self._load(model, jit=jit, ttl=ttl))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)
        return task

    async def _load(self, model: DownloadedModel, *, jit: bool, ttl: float | None) -> None:
        await asyncio.sleep(self._config.load_seconds)
        model.instances += 1
        model.jit_loaded = jit
        model.ttl = (ttl or self._config.idle_ttl) if jit else None
        self.touch(model)
