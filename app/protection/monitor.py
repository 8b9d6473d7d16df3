"""The upstream's health, seen from here: an active check through the tunnel every few seconds,
request failures, and the probe's word, combined into one outage diagnosis that drives the
breaker; and the governor's tick.

An overloaded host is not a down host (issue 15): a check that times out or is told 503, as a
busy host's are, counts only as the `health_failures`-th in a row, and any answer in between (a
chat's first token, a check that answered) starts the count again. The probe counts its own
checks so (`model_server_busy`). A refused connection, a DNS failure, nginx's 502/504 or a 401
count at once. The count decides, not the host's TTFT: a quiet site has no TTFT to compare
with, and the gateway's own cap keeps the TTFT it measures low while the host is swamped."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from app.protection.breaker import BreakerState
from app.protection.health_check import LISTINGS, MISCONFIGURED, HealthReport, check_upstream
from app.protection.outage import (
    OutageClass,
    TokenDoor,
    from_probe,
    probe_token_refused,
    refine,
)
from probe.model_catalog import Listing, ModelState

if TYPE_CHECKING:
    import httpx

    from app.protection.breaker import CircuitBreaker
    from app.protection.governor import PressureGovernor, TtftTracker
    from app.protection.probe_watch import ProbeWatcher
    from app.telemetry import GatewayMetrics
    from probe.model_catalog import ModelView

log = logging.getLogger("llmgw.monitor")


class UpstreamMonitor:
    """Owns the current outage class; opens the breaker on one, lets trials in when it ends."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        breaker: CircuitBreaker,
        watcher: ProbeWatcher,
        governor: PressureGovernor,
        ttft: TtftTracker,
        metrics: GatewayMetrics,
        interval: float,
        model: str,
        probe: str | None = None,
        site: bool = True,
        name: str = "home",
        health_failures: int = 3,
        lm_studio: bool = True,
    ) -> None:
        self.name = name
        # A hosted provider is no LM Studio: only OpenAI's listing is asked of it.
        self._listings = LISTINGS if lm_studio else (Listing.OPENAI,)
        self._client = client
        self._model = model
        # The probe host this model host's snapshots come under (None: every probe's), and
        # whether this monitor's host is the whole site, so its own gauges are the site's
        # (one host); with several, the site's come from all of them (app/upstream/hosts.py).
        self._probe = probe
        self.site = site
        self._breaker = breaker
        self._watcher = watcher
        self._governor = governor
        self._ttft = ttft
        self._metrics = metrics
        self._interval = interval
        self._health_failures = health_failures
        self._busy_checks = 0  # checks in a row that timed out or were told 503
        self.outage: OutageClass | None = None
        self._seen_from_here: OutageClass | None = None
        self.checked = False
        self.model: ModelView | None = None  # what the last check said of LLMGW_MODEL
        self.waking = False  # one request of this process is loading the model
        self._door: TokenDoor | None = None  # the token the last check was refused with

    def model_asleep(self) -> bool:
        """LLMGW_MODEL is downloaded, not loaded, and no outage stands: a chat wakes it."""
        model = self.model
        return model is not None and model.state is ModelState.SLEEPING and self.outage is None

    def context_length(self) -> int | None:
        """The loaded context of LLMGW_MODEL, when the server says (LM Studio's REST API)."""
        if self.model is not None and self.model.context_length is not None:
            return self.model.context_length
        probe = self._watcher.merged(host=self._probe)
        length = None if probe is None else probe.get("model_context_length")
        return int(length) if length else None

    def tool_use(self) -> bool | None:
        """Whether LLMGW_MODEL is trained for tool use, as the model server says (None: it
        does not say, or has not been asked yet)."""
        return None if self.model is None else self.model.tool_use

    def woke(self) -> None:
        """The waking request's first output came: the model is loaded now."""
        self.waking = False
        if self.model is not None and self.model.state is ModelState.SLEEPING:
            self.model = replace(self.model, state=ModelState.READY)
        self._show_model()

    def observe(self, outage: OutageClass | None) -> None:
        """What a request or a health check just showed (None: the model side answered);
        a failure is counted under the class it is diagnosed as."""
        if outage is None:  # it answered: busy checks before this one are in a row no more
            self._busy_checks = 0
        self._seen_from_here = outage
        self._diagnose()
        if outage is not None:
            self._metrics.upstream_failure(self.outage or outage)

    def _diagnose(self) -> None:
        """Combine what we saw with the probe's word; open the breaker on an outage, and let
        trials in when it has passed."""
        probe = self._watcher.merged(host=self._probe)
        failures = self._health_failures
        seen = refine(
            self._seen_from_here, probe, self._watcher.ever_seen(self._probe), failures=failures
        )
        diagnosis = seen or from_probe(probe, failures=failures)
        previous, self.outage = self.outage, diagnosis
        if self.site:
            self._metrics.upstream_outage(diagnosis)
        if diagnosis != previous:
            log.warning("upstream outage on %s: %s", self.name, diagnosis or "none (recovered)")
        if diagnosis is not None:
            self._breaker.force_open()
        elif previous is not None and self._breaker.state is BreakerState.OPEN:
            # The outage is over: no need to sit out the cooldown. A breaker opened by
            # failing requests alone keeps its cooldown.
            self._breaker.health_restored()

    async def check_once(self) -> None:
        """Run the active check and act on what it finds."""
        self.apply(await check_upstream(self._client, self._model, self._listings))
        self.checked = True

    def apply(self, report: HealthReport) -> None:
        """Act on a health check's report. A refused token raises its door's alert and says
        the server answers, nothing more (chats keep going while theirs are let through); a
        model asleep is no outage, unless a chat already found LM Studio will not load it by
        itself ("No models loaded": JIT loading is off). A busy check acts only as the
        `health_failures`-th in a row; before that it leaves everything as it was."""
        if not self._stands(report):
            return
        self._door = report.door
        self._show_doors()
        if report.door is not None:  # it answered: only a refusal chats met still stands
            token = self._seen_from_here is OutageClass.TOKEN_INVALID
            self.observe(OutageClass.TOKEN_INVALID if token else None)
            return
        self.model = report.model
        outage = report.outage
        loaded = report.model is not None and report.model.state is ModelState.READY
        if outage is None and not loaded and self._seen_from_here is OutageClass.MODEL_NOT_LOADED:
            outage = OutageClass.MODEL_NOT_LOADED
        self.observe(outage)
        self._show_model()
        if self.outage is None:
            self._breaker.health_confirmed()

    def _stands(self, report: HealthReport) -> bool:
        """Whether this check's finding counts: any but a busy one, which counts in a row."""
        if not report.busy:
            self._busy_checks = 0
            return True
        self._busy_checks += 1
        if self._busy_checks >= self._health_failures:
            return True
        log.info(
            "health check on %s: no answer in time, or busy (%d of %d in a row before it counts)",
            self.name,
            self._busy_checks,
            self._health_failures,
        )
        return False

    def model_state(self) -> str:
        """What the last check said of LLMGW_MODEL: ready, sleeping, waking (one request of
        this process loads it), missing, not_an_llm or unknown."""
        if self.model is None:
            return ModelState.UNKNOWN
        if self.waking and self.model.state is ModelState.SLEEPING:
            return "waking"
        return self.model.state

    def model_misconfigured(self) -> bool:
        """LLMGW_MODEL is not downloaded, or not an LLM: no chat can work."""
        return self.model is not None and self.model.state in MISCONFIGURED

    def refused_doors(self) -> list[str]:
        """The doors whose token is refused now: the check's own, and the probe's."""
        doors: list[str] = [self._door] if self._door is not None else []
        if probe_token_refused(self._watcher.merged(host=self._probe)):
            doors.append(TokenDoor.PROBE_LMSTUDIO)
        return doors

    def _show_model(self) -> None:
        if self.site:
            self._metrics.model_state(self.model_state())

    def _show_doors(self) -> None:
        if self.site:
            self._metrics.token_doors(self.refused_doors())

    def tick(self) -> None:
        """Feed the governor the latest readings, and act on what the probe says by itself."""
        now = time.monotonic()
        governor = self._governor
        governor.update(now, self._watcher.merged(now, self._probe), self._ttft.current(now))
        self._watcher.forget_stale(now)
        self._diagnose()
        self._show_doors()
        if not self.site:
            return
        self._metrics.pressure(governor.signals, governor.pressure, governor.factor)
        base, effective = governor.base, governor.limits()
        self._metrics.limits(
            base_global=base.global_limit,
            effective_global=effective.global_limit,
            base_cap=base.inflight_cap,
            effective_cap=effective.inflight_cap,
            base_global_tokens=base.global_tokens,
            effective_global_tokens=effective.global_tokens,
        )
        self._metrics.lane_caps(governor.lane_caps())

    async def run(self) -> None:
        """Check every interval and tick every second, for the life of the app."""
        next_check = 0.0
        while True:
            self.tick()
            if self._interval and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._interval
                await self.check_once()
            await asyncio.sleep(1.0)
