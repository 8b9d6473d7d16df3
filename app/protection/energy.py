"""Energy per answer (issue 20): the host's measured energy, shared among the answers it made.

The probe on a model host publishes a counter of the host's joules (`energy_total_joules`,
since `energy_since`) and its idle baseline (`idle_power_watts`, the mean power while nothing
ran). Every two snapshots of a host make an interval, whose energy is the difference of the
counters. The ledger shares each interval among the answers in flight on that host:

- **busy time**: the part of the interval when at least one answer was in flight. The part
  with none drew the idle baseline, so what the answers are given is
  `attributed = energy - idle_watts * (interval - busy)`; without a baseline yet, the busy
  share of the interval's energy.
- **marginal**: what the host drew above its baseline, `energy - idle_watts * interval`;
  the rest of an answer's energy is its share of the baseline (`idle`), reported apart.
- **by tokens**: an answer's share of an interval is its output tokens in that interval over
  all answers' tokens in it. The gateway sees an answer's tokens only at its end, so they are
  spread evenly over its streaming time (first token to end); an interval where the answers
  made no token (all still reading their prompt) is shared by time in flight instead.

An answer is known to the ledger only at its end (one call from the stream's end). Its energy
is settled (observed once, in the histograms) at the first snapshot after that end, when every
interval it lived through is in, and once the answers it shared those intervals with have
ended too (the gateway counts its streams in flight on the host at each snapshot, so it knows
how many are still to come): their tokens are then known, and the shares exact to the model
above. An answer still waiting after `SETTLE_WITHIN` is settled with the others still
streaming estimated at the mean rate of the known ones. The last answer of an interval takes
exactly what is left of it, so the answers' energy sums to the energy of the intervals they
lived in, less the baseline of the time nothing was in flight.

Its error, which no gateway outside the model server can avoid:
- tokens are not joules: a long prompt's prefill costs energy before any output token, and the
  share follows output tokens spread evenly, not the model's actual pace;
- everything else the host runs (a build, a browser, the probe) is in its counter and shared
  among the answers as theirs;
- one snapshot interval of resolution (the probe's, 1 to 5 s): an answer shorter than that
  shares its interval by its tokens with whatever else ran in it;
- the gateway's and the probe's clocks: answer times are this host's wall clock, intervals the
  probe's (NTP keeps them within milliseconds; a skew of s seconds moves up to s * power joules
  between neighbouring answers, never out of the sum);
- several gateway replicas serving one host: each takes of an interval the part its own
  streams are of all replicas' streams on the host (the host's in-flight leases in Redis,
  counted four times a second beside this replica's own count, `others`), and shares that among its
  own answers; the replicas' sums then add up to the host's, to within the mix of answers
  (a replica's streams count alike whatever their tokens) and a second's staleness.

A host whose probe has no power source gets no energy series at all (never zeros). Nothing here
runs on a chat's path: `answered` only appends the ended chat to a list (about a microsecond);
counting it and sharing the energy run in the background, in a drain once a second and in the
probe watcher's task when a snapshot comes in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from app.chat.tokens import estimate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from app.telemetry import GatewayMetrics

log = logging.getLogger("llmgw.energy")
ENERGY = "energy_total_joules"
# How long an interval is kept for the answers that lived through it (past the longest answer).
MARGIN_SECONDS = 60.0
MAX_INTERVALS = 10_000  # per host: hours at a 1 s interval, a few hundred kilobytes
# An answer waits for the answers it shared an interval with to end (to know their tokens), at
# most this long after its own end; then the ones still streaming are estimated.
SETTLE_WITHIN = 60.0
DRAIN_SECONDS = 1.0  # how often the chats that ended are taken in, snapshot or not
# How often the other replicas' streams on each host are counted (one ZCOUNT per host): the
# older the count at a snapshot, the more a stream begun or ended since moves between them.
COUNT_SECONDS = 0.25


class Ended(Protocol):
    """What the ledger reads of a stream's record (app/upstream/relay.py `StreamRecord`)."""

    started: float
    first_token_at: float | None
    usage: dict[str, Any] | None
    text_chars: int


def _overlap(start: float, end: float, t0: float, t1: float) -> float:
    return max(0.0, min(end, t1) - max(start, t0))


@dataclass(slots=True, eq=False)
class Answer:
    """One answer as the ledger sees it: wall-clock times, its output tokens, its shares."""

    host: str
    model: str
    start: float
    first: float  # its first token (tokens are spread from here to its end)
    end: float
    output_tokens: int
    total: float = 0.0
    marginal: float = 0.0
    marginal_known: bool = True
    settled: bool = False
    intervals: list[Interval] = field(default_factory=list)

    def presence(self, t0: float, t1: float) -> float:
        return _overlap(self.start, self.end, t0, t1)

    def tokens(self, t0: float, t1: float) -> float:
        span = self.end - self.first
        if span <= 0:
            return float(self.output_tokens) if t0 < self.end <= t1 else 0.0
        return self.output_tokens * _overlap(self.first, self.end, t0, t1) / span

    def spans(self, moment: float) -> bool:
        return self.start < moment <= self.end


@dataclass(slots=True, eq=False)
class Interval:
    """The host's energy between two snapshots, and who was there."""

    start: float
    end: float
    joules: float
    idle_watts: float | None
    inflight_start: int  # the gateway's streams in flight on the host at each snapshot,
    inflight_end: int
    counted_start: float  # counted when it came in (this host's clock: it may come late)
    counted_end: float
    answers: list[Answer] = field(default_factory=list)
    claimed: float = 0.0
    claimed_marginal: float = 0.0
    shape: _Shape | None = None


@dataclass(frozen=True, slots=True)
class _Reading:
    ts: float
    since: float
    joules: float
    inflight: int
    counted: float
    mine: float = 1.0  # this replica's part of the host's streams (1: no other replica's)


class _HostLedger:
    """One probe host's recent intervals and its answers not yet settled."""

    def __init__(self) -> None:
        self.last: _Reading | None = None
        self.intervals: deque[Interval] = deque(maxlen=MAX_INTERVALS)
        self.pending: list[Answer] = []
        self.powered = False

    def add_answer(self, answer: Answer) -> None:
        """An answer that ended, in every interval it lived in or was counted at the end of
        (a snapshot that came in late counts streams begun after it was taken)."""
        for interval in reversed(self.intervals):
            if max(interval.end, interval.counted_end) <= answer.start:
                break
            if interval.start >= answer.end:
                continue
            interval.answers.append(answer)
            answer.intervals.append(interval)
        self.pending.append(answer)

    def add_interval(self, interval: Interval) -> None:
        interval.answers = [
            a for a in self.pending if a.end > interval.start and a.start < interval.end
        ]
        for answer in interval.answers:
            answer.intervals.append(interval)
        self.intervals.append(interval)

    def prune(self, before: float) -> None:
        while self.intervals and self.intervals[0].end < before:
            self.intervals.popleft()


class EnergyLedger:
    """Shares each host's measured energy among its answers; see the module's docstring.

    `probes` maps each gateway host to its probe's host name (None: whichever probe reports,
    the single host of the old configuration); `inflight(host)` is this replica's streams in
    flight on a gateway host now; `longest_answer` bounds how long intervals are kept."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        probes: Mapping[str, str | None],
        inflight: Callable[[str], int],
        *,
        longest_answer: float,
        everyone: Callable[[str], Awaitable[int]] | None = None,
        models: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._probes = dict(probes)
        self._inflight = inflight
        # All replicas' streams on a gateway host (Redis), and of those the other replicas'.
        self._everyone = everyone
        self._others: dict[str, int] = {}
        self._retention = longest_answer + MARGIN_SECONDS
        self._clock, self._monotonic = clock, monotonic
        self._ledgers: dict[str, _HostLedger] = {}
        self._ended: list[tuple[str, str, Ended, float]] = []
        metrics.energy_configured(probes.keys(), models)

    # -- the stream's end -----------------------------------------------------------------

    def answered(self, host: str, model: str, record: Ended) -> None:
        """One chat ended on `host`: kept as it is, counted and shared off the chat's path
        (`drain`, from the background task and before each snapshot)."""
        self._ended.append((host, model, record, self._monotonic()))

    async def run(self, every: float = DRAIN_SECONDS) -> None:
        """Count the chats that ended, for the life of the app (a host with no probe, the
        fallback, has no snapshot to do it)."""
        ticks = max(1, round(every / COUNT_SECONDS))
        while True:
            for _ in range(ticks):  # the other replicas' streams, fresh for the next snapshot
                await asyncio.sleep(every / ticks)
                await self.count_others()
            self.drain()

    async def count_others(self) -> None:
        """The other replicas' streams on each host with a probe, from the host's leases:
        all of them, less this replica's own counted at the same moment."""
        if self._everyone is None:
            return
        for host in self._probes:
            mine = self._inflight(host)
            try:
                everyone = await self._everyone(host)
            except (RedisError, OSError) as exc:  # Redis away: the last count stands
                log.debug("replicas' streams on %s not counted: %s", host, type(exc).__name__)
                continue
            self._others[host] = max(0, everyone - max(mine, self._inflight(host)))

    def drain(self) -> None:
        """Take in the chats that ended since the last time."""
        ended, self._ended = self._ended, []
        offset = self._clock() - self._monotonic()
        for host, model, record, at in ended:
            self._take(host, model, record, at, offset)

    def _take(self, host: str, model: str, record: Ended, ended: float, offset: float) -> None:
        first = ended if record.first_token_at is None else record.first_token_at
        usage = record.usage or {}
        output = int(usage.get("output_tokens") or 0) or estimate(record.text_chars)
        if record.first_token_at is not None:  # an answer: its model's count
            self._metrics.energy_model_answer(
                model,
                host,
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=output,
                ttft=first - record.started,
                streaming=ended - first,
            )
        probe = self._probe_of(host)
        ledger = self._ledgers.get(probe) if probe is not None else None
        if ledger is None or not ledger.powered:  # no power source: no energy at all
            return
        answer = Answer(
            host, model, record.started + offset, first + offset, ended + offset, output
        )
        ledger.add_answer(answer)

    # -- a probe's snapshot ---------------------------------------------------------------

    def record(self, probe: str, ts: float, signals: Mapping[str, float]) -> None:
        """One snapshot of `probe`'s host, taken at `ts` (its clock), with its numeric fields:
        a new interval, then the answers it settles."""
        hosts = self._hosts_of(probe)
        if not hosts:
            return
        self.drain()
        ledger = self._ledgers.setdefault(probe, _HostLedger())
        joules, since = signals.get(ENERGY), signals.get("energy_since")
        if joules is None or since is None:
            self._unpowered(ledger, hosts)
            return
        ledger.powered = True
        idle = signals.get("idle_power_watts")
        for host in hosts:
            self._metrics.energy_host_power(host, signals.get("power_total_watts"), idle)
        inflight = sum(self._inflight(host) for host in hosts)
        others = sum(self._others.get(host, 0) for host in hosts)
        mine = inflight / (inflight + others) if others else 1.0
        reading = _Reading(ts, since, joules, inflight, self._clock(), mine)
        last = ledger.last
        if last is not None and ts <= last.ts:
            return  # the same snapshot by the other path, or an older one
        ledger.last = reading
        if last is None or last.since != since or joules < last.joules:
            return  # the first, or the probe started counting again: no difference across it
        part = (last.mine + mine) / 2  # this replica's part of the interval's energy
        interval = Interval(
            last.ts, ts, (joules - last.joules) * part, None if idle is None else idle * part,
            last.inflight, inflight, last.counted, reading.counted,
        )  # fmt: skip
        ledger.add_interval(interval)
        for host in hosts:  # the host's own, whoever shares it
            self._metrics.energy_host_joules(host, (joules - last.joules) / len(hosts))
        self._settle(ledger, ts)
        ledger.prune(ts - self._retention)

    def _settle(self, ledger: _HostLedger, now: float) -> None:
        stale = now - self._retention  # its intervals are gone (a probe that stopped counting)
        ledger.pending = [a for a in ledger.pending if a.end > stale]
        due = [a for a in ledger.pending if a.end <= now and _ready(a, now)]
        if not due:
            return
        settling = set(map(id, due))
        ledger.pending = [a for a in ledger.pending if id(a) not in settling]
        for answer in sorted(due, key=lambda a: a.end):
            for interval in answer.intervals:
                _share(interval, answer)
            answer.settled = True
            answer.intervals = []  # settled: its intervals may go
            marginal = answer.marginal if answer.marginal_known else None
            self._metrics.energy_answer(
                answer.model, answer.host, answer.total, marginal, answer.output_tokens
            )

    def _unpowered(self, ledger: _HostLedger, hosts: list[str]) -> None:
        if ledger.powered:
            for host in hosts:
                self._metrics.energy_host_gone(host)
        ledger.powered, ledger.last, ledger.pending = False, None, []
        ledger.intervals.clear()

    # -- which probe is whose -------------------------------------------------------------

    def _hosts_of(self, probe: str) -> list[str]:
        hosts = [h for h, p in self._probes.items() if p == probe]
        for host, bound in self._probes.items():
            if bound is None:  # the single host of the old configuration: the first probe
                self._probes[host] = probe
                hosts.append(host)
        return hosts

    def _probe_of(self, host: str) -> str | None:
        return self._probes.get(host)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What an interval's sharing needs of the answers known in it (kept until one more is
    known): each one's weight, the streams not known yet, the energy to share."""

    known: int
    weights: dict[int, float]  # by id(answer)
    weight: float
    unknown_end: int  # still streaming at its end
    guessed: float  # their estimated weight
    attributed: float
    marginal: float | None


def _shape(interval: Interval) -> _Shape:
    shape = interval.shape
    if shape is not None and shape.known == len(interval.answers):
        return shape
    t0, t1, known = interval.start, interval.end, interval.answers
    tokens = {id(a): a.tokens(t0, t1) for a in known}
    presence = {id(a): a.presence(t0, t1) for a in known}
    weights = tokens if sum(tokens.values()) > 0 else presence
    # The streams counted at each end that are not known yet (none is known before its end).
    unknown_end = max(0, interval.inflight_end - sum(a.spans(interval.counted_end) for a in known))
    counted_start = interval.counted_start
    from_start = max(0, interval.inflight_start - sum(a.spans(counted_start) for a in known))
    unknown_whole = min(unknown_end, from_start)
    length, weight, present = t1 - t0, sum(weights.values()), sum(presence.values())
    per_stream = weight / present * length if present else 0.0
    guessed = per_stream * (unknown_whole + 0.5 * (unknown_end - unknown_whole))
    busy = _busy(known, t0, t1, unknown_end, unknown_whole)
    energy, idle = interval.joules, interval.idle_watts
    if idle is None:
        attributed, marginal = (energy * busy / length if length > 0 else 0.0), None
    else:
        attributed = min(energy, max(0.0, energy - idle * (length - busy)))
        marginal = min(attributed, max(0.0, energy - idle * length))
    shape = _Shape(len(known), weights, weight, unknown_end, guessed, attributed, marginal)
    interval.shape = shape
    return shape


def _ready(answer: Answer, now: float) -> bool:
    """Whether every answer it shared an interval with is known, or it waited long enough."""
    if now - answer.end >= SETTLE_WITHIN:
        return True
    return all(_shape(interval).unknown_end == 0 for interval in answer.intervals)


def _share(interval: Interval, answer: Answer) -> None:
    """Give `answer` its share of `interval`: by tokens, else by time in flight; answers still
    streaming (in the gateway's count, not yet known) are estimated; the last one known to be
    there, with none still streaming, takes exactly what is left."""
    shape = _shape(interval)
    marginal = shape.marginal
    left = shape.attributed - interval.claimed
    left_marginal = (marginal or 0.0) - interval.claimed_marginal
    mine = shape.weights[id(answer)]
    if shape.unknown_end == 0:
        open_weight = sum(shape.weights[id(a)] for a in interval.answers if not a.settled)
        fraction = mine / open_weight if open_weight > 0 else 1.0
        total, extra = left * fraction, left_marginal * fraction
    else:
        fraction = mine / ((shape.weight + shape.guessed) or 1.0)
        total = min(shape.attributed * fraction, left)
        extra = min((marginal or 0.0) * fraction, left_marginal)
    interval.claimed += max(total, 0.0)
    interval.claimed_marginal += max(extra, 0.0)
    answer.total += max(total, 0.0)
    answer.marginal += max(extra, 0.0)
    if marginal is None:
        answer.marginal_known = False


def _busy(known: list[Answer], t0: float, t1: float, unknown_end: int, unknown_whole: int) -> float:
    """Seconds of the interval with at least one answer in flight (known ones' spans; one still
    streaming from before the interval fills it, one that began within it half of it)."""
    if unknown_whole:
        return t1 - t0
    spans = sorted((max(a.start, t0), min(a.end, t1)) for a in known if a.presence(t0, t1) > 0)
    if unknown_end:
        spans = sorted([*spans, ((t0 + t1) / 2, t1)])
    busy, reach = 0.0, t0
    for start, end in spans:
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return busy
