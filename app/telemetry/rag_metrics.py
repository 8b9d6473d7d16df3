"""The metrics of reading the posts (issue 19). Placeholder until the full set lands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class RagMetrics:
    """The posts half of `GatewayMetrics`, on its registry."""

    registry: CollectorRegistry

    def _rag_metrics(self) -> None:
        self._rag_calls = Counter(
            "llmgw_rag_tool_calls_total", "Tool calls.", ["outcome"], registry=self.registry
        )

    def rag_tool_call(self, outcome: str) -> None:
        self._rag_calls.labels(outcome).inc()

    def rag_search(self, seconds: float, passages: int, tokens: int, mode: str) -> None:
        del seconds, passages, tokens, mode

    def rag_answer(self, mode: str, rounds: int, *, sourced: bool) -> None:
        del mode, rounds, sourced
