"""The metrics of visitor passes (issue 16): challenges issued, passes granted, solutions and
passes refused by reason, and the difficulty now. Part of `GatewayMetrics` (a mixin on its
registry, as the host metrics are); every reason's series exists from the start, so a spike
of refusals is seen from its first one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Gauge

from app.telemetry.labels import bounded

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# Why a solution (POST /api/pass) or a pass (X-Visitor-Pass) was refused, or a chat needed one.
PASS_REFUSALS: Final = frozenset(
    {
        "malformed",
        "bad_signature",
        "wrong_answer",
        "expired",
        "spent",
        "foreign_network",
        "required",
        "network",  # adaptive: the network's chats without a pass were past normal
    }
)
PASS_CHECKS: Final = ("solution", "pass")  # what was refused: a solution, or a chat's pass


class PassMetrics:
    """The visitor-pass half of `GatewayMetrics`, on its registry."""

    registry: CollectorRegistry

    def _pass_metrics(self) -> None:
        self._pass_challenges = Counter(
            "llmgw_pass_challenges_total", "Proof-of-work challenges issued.", ["steps"],
            registry=self.registry,
        )  # fmt: skip
        self._pass_granted = Counter(
            "llmgw_pass_granted_total", "Visitor passes granted for a solution.",
            registry=self.registry,
        )  # fmt: skip
        self._pass_refused = Counter(
            "llmgw_pass_refused_total",
            "Solutions and passes refused, by what and why (`required`: a chat without one).",
            ["check", "reason"],
            registry=self.registry,
        )
        self._pass_steps = Gauge(
            "llmgw_pass_difficulty_steps",
            "Steps of doubled work a challenge costs now, before a network's own.",
            registry=self.registry,
        )
        self._pass_required = Gauge(
            "llmgw_pass_required",
            "1 while a chat without a visitor pass is refused.",
            registry=self.registry,
        )
        self._pass_challenges.labels("0")  # base difficulty, seen before the first challenge
        for check in PASS_CHECKS:
            for reason in PASS_REFUSALS:
                self._pass_refused.labels(check, reason)

    def pass_challenge(self, steps: int) -> None:
        """A challenge went out at this many steps (bounded: 0 to 20)."""
        self._pass_challenges.labels(str(max(0, min(steps, 20)))).inc()

    def pass_granted(self) -> None:
        self._pass_granted.inc()

    def pass_refused(self, check: str, reason: str) -> None:
        """A solution or a pass refused, by its reason."""
        self._pass_refused.labels(bounded(check, PASS_CHECKS), bounded(reason, PASS_REFUSALS)).inc()

    def pass_difficulty(self, steps: int, *, required: bool) -> None:
        """The difficulty now (pressure and base), and whether a pass is required now."""
        self._pass_steps.set(steps)
        self._pass_required.set(1 if required else 0)
