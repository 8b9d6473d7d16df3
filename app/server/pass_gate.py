"""Visitor passes at the door of the anonymous chat (LLMGW_PASS): the price of a challenge, the
pass it buys, and whether a chat needs one now.

The price follows the load: steps of doubled work are added while the governor's pressure is
above its soft threshold (one per quarter of the way to hard), and for a network (a /24 or
/64) asking for more challenges than its share in a window (one per doubling above it, counted
in Redis across replicas, one round trip per challenge). A pass is checked here without Redis
(its HMAC); a solution is spent once in Redis (app/access/passes.py `spend_once`).

In `adaptive`, a chat needs a pass while the pressure is above soft, or while its network's
chats without a pass are past normal (LLMGW_PASS_NETWORK_CHATS per window). That count is one
more scope of the chat's own admission (`network_scope`), so it costs no round trip of its own,
is exact across replicas, and a refused chat counts nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from app.access.passes import (
    PassInfo,
    Refused,
    Solution,
    challenge,
    issue_pass,
    network_name,
    network_of,
    read_pass,
    spend_once,
    verify_solution,
)
from app.admission.decision import Limit, Scope
from app.errors import PassInvalid, PassRefused, PassRequired

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.protection.governor import PressureGovernor
    from app.settings import Settings
    from app.telemetry import GatewayMetrics

# Steps the pressure adds between the soft and the hard threshold.
PRESSURE_STEPS = 4
LOCAL_SPENT = 10_000  # solutions remembered per process while Redis is away
INVALID_MESSAGES = {
    "malformed": "the visitor pass is not one of ours",
    "bad_signature": "the visitor pass is not one of ours",
    "expired": "the visitor pass has expired",
    "foreign_network": "the visitor pass was given to another network",
    "spent": "the visitor pass has no chats left",
}


class PassGate:
    """Challenges, passes and the rule of LLMGW_PASS, for one gateway process."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        key: bytes,
        governor: PressureGovernor,
        metrics: GatewayMetrics,
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._settings = settings
        self._key = key
        self._governor = governor
        self._prefix = settings.key_prefix
        self.mode = settings.pass_mode
        self._spent_here: dict[str, float] = {}  # while Redis is away: signature -> expiry

    @property
    def on(self) -> bool:
        return self.mode != "off"

    def pressure_steps(self) -> int:
        """Steps the governor's pressure adds now: none up to soft, PRESSURE_STEPS at hard."""
        config, pressure = self._governor.config, self._governor.pressure
        if pressure <= config.soft:
            return 0
        share = min(1.0, (pressure - config.soft) / (config.hard - config.soft))
        return math.ceil(share * PRESSURE_STEPS)

    def steps(self, network_challenges: int = 0) -> int:
        """The difficulty now, for a network that asked for this many challenges this window."""
        settings = self._settings
        share = settings.pass_network_share
        crowd = 0
        if network_challenges > share:
            crowd = math.floor(math.log2(network_challenges / share))
        total = settings.pass_base_steps + self.pressure_steps() + crowd
        return min(total, settings.pass_max_steps)

    async def challenge(self, address: str) -> dict[str, object]:
        """A challenge priced for this address's network, counted against its share (without
        Redis: the price of pressure alone)."""
        asked = 0
        with contextlib.suppress(RedisError, OSError):
            asked = await self._count_challenge(network_of(address))
        settings, steps = self._settings, self.steps(asked)
        self._metrics.pass_challenge(steps)
        return challenge(
            steps,
            key=self._key,
            base_max_number=settings.pass_base_number,
            expires_seconds=settings.pass_challenge_seconds,
        )

    async def _count_challenge(self, network: str) -> int:
        """This network's challenges in the current window, this one included (one round
        trip: INCR, and an expiry set only when missing)."""
        name = f"{{{self._prefix}}}:pass-network:{network_name(self._key, network)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, self._settings.window_seconds, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def grant(self, payload: str, address: str) -> tuple[str, int]:
        """A pass for a solved challenge, spent once across replicas; PassRefused otherwise."""
        solution = verify_solution(payload, key=self._key)
        if isinstance(solution, Refused):
            self._metrics.pass_refused("solution", str(solution.reason))
            raise PassRefused(_refused(str(solution.reason)), reason=str(solution.reason))
        if not await self._spend(solution):
            self._metrics.pass_refused("solution", "spent")
            raise PassRefused("this solution was already used", reason="spent")
        self._metrics.pass_granted()
        settings = self._settings
        token = issue_pass(
            network_of(address), key=self._key, seconds=settings.pass_seconds,
            chats=settings.pass_chats,
        )  # fmt: skip
        return token, settings.pass_seconds

    async def _spend(self, solution: Solution) -> bool:
        """Spend a solution once: in Redis, across replicas; while Redis is away, in this
        process (a replay on another replica is then possible until the challenge expires)."""
        try:
            return await spend_once(self._redis, self._prefix, solution)
        except (RedisError, OSError):
            now = time.time()
            if len(self._spent_here) > LOCAL_SPENT:
                self._spent_here = {s: t for s, t in self._spent_here.items() if t > now}
            if self._spent_here.get(solution.signature, 0) > now:
                return False
            self._spent_here[solution.signature] = solution.expires
            return True

    def check(self, token: str | None, address: str | None) -> PassInfo | None:
        """The pass a chat carries (None: none sent, and none needed now); PassInvalid for a
        bad one, PassRequired when one is needed and none was sent."""
        if token is None:
            if self.required():
                self._metrics.pass_refused("pass", "required")
                raise PassRequired("a visitor pass is needed to chat now: solve a challenge")
            return None
        info = read_pass(token, _network(address), key=self._key)
        if isinstance(info, Refused):
            reason = str(info.reason)
            self._metrics.pass_refused("pass", reason)
            raise PassInvalid(INVALID_MESSAGES.get(reason, "bad pass"), reason=reason)
        return info

    def network_scope(self, address: str | None) -> Scope | None:
        """`adaptive`: the scope that counts this network's chats without a pass in the chat's
        own admission; past its limit the chat needs a pass (`crowded`). None in other modes."""
        if self.mode != "adaptive":
            return None
        settings = self._settings
        chats = settings.pass_network_chats or 3 * settings.visitor_limit
        network = network_name(self._key, _network(address))
        return Scope(f"pass-network:{network}", Limit.PASS_NETWORK, requests=chats)

    def crowded(self) -> PassRequired:
        """A chat without a pass from a network whose chats without one are past normal."""
        self._metrics.pass_refused("pass", "network")
        return PassRequired("your network is busy: a visitor pass is needed to chat now")

    def spent(self) -> PassInvalid:
        """A pass whose chats are all used (the admission script counted them)."""
        self._metrics.pass_refused("pass", "spent")
        return PassInvalid(INVALID_MESSAGES["spent"], reason="spent")

    def detail(self) -> dict[str, object]:
        """For /readyz: the mode, the difficulty now (before a network's own) and whether a
        chat without a pass is refused now."""
        return {"mode": self.mode, "steps": self.steps(), "required": self.required()}

    async def run(self) -> None:
        """The difficulty's gauges, every second."""
        while True:
            self._metrics.pass_difficulty(self.steps(), required=self.required())
            await asyncio.sleep(1.0)

    def required(self) -> bool:
        """Whether every chat without a pass is refused now: always in `required`; in
        `adaptive`, while the governor's pressure is above its soft threshold (a network past
        its normal rate is refused by its own scope, `network_scope`)."""
        if self.mode == "required":
            return True
        return self.mode == "adaptive" and self.pressure_steps() > 0


def pass_scope(held: PassInfo) -> Scope:
    """A pass's chats, counted in the admission script for as long as the pass lasts."""
    left_ms = max(1, int((held.expires - time.time()) * 1000))
    return Scope(f"pass:{held.id}", Limit.VISITOR_PASS, requests=held.chats, window_ms=left_ms)


def _network(address: str | None) -> str:
    """A chat's network; a visitor with no address is bucketed as 0.0.0.0's."""
    return network_of(address or "0.0.0.0")


def _refused(reason: str) -> str:
    return {
        "malformed": "the solution is not an ALTCHA payload",
        "bad_signature": "the challenge was not ours",
        "wrong_answer": "the solution does not solve the challenge",
        "expired": "the challenge has expired: ask for a new one",
    }.get(reason, "the solution buys no pass")
