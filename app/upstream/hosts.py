"""The model hosts: each with its own client, breaker, monitor (active check, outage class),
governor (fed by its own probe) and time to first token; and the hosted fallback, which answers
only when no home host can. The admission script picks the host (app/admission/lua/admit.lua);
here is what it is told about each, and the site's state made of all of them: one host out
while others serve is `degraded`, all out is `down`.

With one host (LLMGW_UPSTREAM_URL) the site is that host: its governor, breaker and outage are
the site's, exactly as before hosts existed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from app.access.keys import Lane
from app.admission.decision import HostSlot
from app.errors import BreakerOpen
from app.protection.breaker import BreakerState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from app.admission.redis_admitter import RedisAdmitter
    from app.protection.breaker import CircuitBreaker, Permit
    from app.protection.governor import PressureGovernor, TtftTracker
    from app.protection.monitor import UpstreamMonitor
    from app.settings import UpstreamHost
    from app.telemetry import GatewayMetrics
    from app.upstream.client import UpstreamClient

log = logging.getLogger("llmgw.hosts")
# Site states, best first: the site's breaker is its best host's.
BREAKER_ORDER = (BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN)
UNAVAILABLE_MESSAGE = "the model is unavailable right now, try again soon"
BUDGET_EVERY = 5  # ticks between reads of the fallback's budget spent today


@dataclass(slots=True)
class Host:
    """One model host, home or the hosted fallback, and what guards it."""

    config: UpstreamHost
    client: UpstreamClient
    breaker: CircuitBreaker
    monitor: UpstreamMonitor
    governor: PressureGovernor
    ttft: TtftTracker

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def fallback(self) -> bool:
        return self.config.fallback

    def serving(self) -> bool:
        """Whether it can take new conversations: its breaker is not open and no outage
        stands."""
        return self.breaker.state is not BreakerState.OPEN and self.monitor.outage is None


@dataclass(slots=True)
class Offer:
    """The hosts one chat may go to: a breaker permit from each that gives one. The admission
    picks one (`take`); the others' permits go back."""

    hosts: Hosts
    permits: dict[str, Permit]

    def slots(self, lane: Lane) -> tuple[HostSlot, ...]:
        """What the admission script is told of each host, for this lane, now: asked again
        on each try of a chat that waits, so a host that went out meanwhile is given back and
        one that came back is asked for a permit."""
        self.refresh()
        return self.hosts.slots(lane, self.permits)

    def refresh(self) -> None:
        """Permits as the breakers would give them now (an outage holds a breaker open; once
        its cooldown is over, trials go through, as for a chat that just came)."""
        for name in list(self.permits):
            host = self.hosts.by_name(name)
            if host.breaker.state is BreakerState.OPEN:
                host.breaker.give_back(self.permits.pop(name))
        for host in self.hosts.every():
            if host.name not in self.permits:
                permit = host.breaker.permit()  # None while open, or with every trial out
                if permit is not None:
                    self.permits[host.name] = permit

    def take(self, name: str) -> tuple[Host, Permit]:
        """The host chosen and its permit; every other permit goes back."""
        host = self.hosts.by_name(name)
        permit = self.permits.pop(name)
        self.give_back()
        return host, permit

    def give_back(self) -> None:
        """None of these hosts was called (the chat was refused, or another was chosen)."""
        for name, permit in self.permits.items():
            self.hosts.by_name(name).breaker.give_back(permit)
        self.permits = {}


class Hosts:
    """The home hosts in their configured order, the fallback, and the site's governor (the
    single host's own, or one that follows all of them)."""

    def __init__(
        self,
        home: tuple[Host, ...],
        fallback: Host | None,
        *,
        site: PressureGovernor,
        metrics: GatewayMetrics,
        admitter: RedisAdmitter,
        fallback_on_shed: bool,
        fallback_budget: int,
        fallback_share: int = 0,
        round_robin: bool = False,
    ) -> None:
        self.fallback_share = fallback_share  # each visitor id's tokens of the fallback's day
        self.round_robin = round_robin
        self._turns = 0
        self.home = home
        self.fallback_budget = fallback_budget  # the fallback's tokens per UTC day
        self.fallback = fallback
        self.site = site
        self.fallback_on_shed = fallback_on_shed
        self._metrics = metrics
        self._admitter = admitter
        self._by_name = {host.name: host for host in (*home, *([fallback] if fallback else []))}
        self._site_breaker = BreakerState.CLOSED
        self._ticks = 0

    def _turn(self, permits: Mapping[str, Permit]) -> Host | None:
        """Round robin: the next home host in turn that is up (its weight is 1, the others'
        0, so only it is chosen, while it has a place)."""
        up = [host for host in self.home if host.name in permits]
        if not up:
            return None
        self._turns += 1
        return up[self._turns % len(up)]

    def _weight(self, host: Host, turn: Host | None) -> float:
        """What the host's free places are scaled by: its weight and its governor's factor;
        in round robin, 1 for the host whose turn it is and 0 for the others."""
        if self.round_robin:
            return 1.0 if host is turn else 0.0
        return host.config.weight * host.governor.factor

    @property
    def several(self) -> bool:
        return len(self.home) > 1

    def every(self) -> tuple[Host, ...]:
        """The home hosts, then the fallback."""
        return tuple(self._by_name.values())

    def by_name(self, name: str) -> Host:
        return self._by_name.get(name, self.home[0])

    def offer(self) -> Offer:
        """A permit from each host whose breaker gives one; BreakerOpen (a 503 with
        Retry-After) when none does: the local fast path, no Redis, no upstream."""
        offer = Offer(self, {})
        offer.refresh()
        if not offer.permits:
            raise self.closed()
        return offer

    def offer_left(self) -> bool:
        """Whether some host's breaker would give a permit now (none is taken)."""
        return any(h.breaker.state is not BreakerState.OPEN for h in self._by_name.values())

    def closed(self) -> BreakerOpen:
        """Every host's breaker is open: come back when the first lets a trial through."""
        return BreakerOpen(UNAVAILABLE_MESSAGE, retry_after=max(1, round(self.retry_after())))

    def retry_after(self) -> float:
        """Seconds until some host's breaker lets a trial through."""
        return min(host.breaker.retry_after() for host in self._by_name.values())

    def slots(self, lane: Lane, permits: Mapping[str, Permit]) -> tuple[HostSlot, ...]:
        """Each home host: the lane's cap on it, its weight times its factor, its model
        asleep or not, and up when its breaker gave a permit (an outage holds the breaker
        open; after its cooldown, trials go through); then the fallback, with its day's
        tokens, when its breaker gave one. A host not up is still counted for a key's
        streams at once."""
        turn = self._turn(permits) if self.round_robin else None
        slots = [
            HostSlot(
                host.name,
                host.governor.limits(lane).inflight_cap,
                self._weight(host, turn),
                up=host.name in permits,
                asleep=host.monitor.model_asleep(),
                recovering=host.breaker.state is BreakerState.HALF_OPEN,
            )
            for host in self.home
        ]
        fallback = self.fallback
        if fallback is not None and fallback.name in permits:
            budget, share = self.fallback_budget, self.fallback_share
            slots.append(
                HostSlot(fallback.name, fallback.config.max_inflight, budget=budget, share=share)
            )
        return tuple(slots)

    def site_breaker(self) -> BreakerState:
        """The best state of any home host's breaker (with one host, its own)."""
        states = [host.breaker.state for host in self.home]
        return min(states, key=BREAKER_ORDER.index)

    def site_outage(self) -> str | None:
        """The outage that stops the whole site: the first host's, when no home host serves."""
        if any(host.serving() for host in self.home):
            return None
        outage = next((h.monitor.outage for h in self.home if h.monitor.outage), None)
        return None if outage is None else str(outage)

    def some_out(self) -> bool:
        """Some home host is out while another serves."""
        serving = [host.serving() for host in self.home]
        return any(serving) and not all(serving)

    def tick(self) -> None:
        """Once a second: each host's gauges; with several hosts, the site's governor follows
        theirs (capacity-weighted) and the site's own gauges are made of all of them."""
        for host in self._by_name.values():
            monitor = host.monitor
            self._metrics.host_state(
                host.name,
                serving=host.serving(),
                breaker=str(host.breaker.state),
                outage=None if monitor.outage is None else str(monitor.outage),
                model_state=str(monitor.model_state()),
                pressure=host.governor.pressure,
                factor=host.governor.factor,
                inflight_cap=host.governor.limits().inflight_cap,
            )
        if not self.several:
            return
        slots = sum(host.config.max_inflight for host in self.home)
        factor = sum(h.governor.factor * h.config.max_inflight for h in self.home) / slots
        # The site is as pressured as its least pressured serving host: a visitor can go there.
        serving = [host.governor.pressure for host in self.home if host.serving()]
        pressure = min(serving, default=max(host.governor.pressure for host in self.home))
        self.site.follow(factor, pressure)
        breaker = self.site_breaker()
        if breaker is not self._site_breaker:
            self._metrics.breaker_changed(self._site_breaker, breaker)
            self._site_breaker = breaker
        self._metrics.upstream_outage(self.site_outage())
        self._metrics.model_state(self.home[0].monitor.model_state())
        doors = {door for host in self.home for door in host.monitor.refused_doors()}
        self._metrics.token_doors(sorted(doors))
        self._metrics.lane_caps(self.lane_caps())

    def lane_caps(self) -> dict[str, int]:
        """Each lane's in-flight cap now, over every home host."""
        caps = [host.governor.lane_caps() for host in self.home]
        return {str(lane): sum(cap[str(lane)] for cap in caps) for lane in Lane}

    async def read_budget(self) -> None:
        """The fallback's tokens spent today across replicas, for its gauge."""
        if self.fallback is None:
            return
        try:
            spent = await self._admitter.fallback_spent()
        except (RedisError, OSError):
            return
        self._metrics.fallback_budget(used=spent, limit=self.fallback_budget)

    async def run(self) -> None:
        """Tick every second for the life of the app."""
        while True:
            self.tick()
            self._ticks += 1
            if self._ticks % BUDGET_EVERY == 1:
                await self.read_budget()
            await asyncio.sleep(1.0)
