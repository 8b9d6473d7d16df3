"""The metrics of the model reading the owner's posts (issue 19): the `search_posts` calls by
outcome, the searches' time, passages and tokens, the tool rounds per answer, the answers with
sources, and the posts index's size and age. Part of `GatewayMetrics` (a mixin on its registry,
as the pass metrics are); every outcome's series exists from the start.

The index's gauges are read from the index when Prometheus scrapes (`PostsIndexCollector`): its
age grows between refreshes with nobody setting it, and is absent while there is no index."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.telemetry.labels import bounded

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import CollectorRegistry

# What became of one `search_posts` call the model made: passages sent back, none found, a
# function the gateway does not offer, arguments that are no JSON object with a query, a query
# over the length cap, a search that failed, or a call past LLMGW_RAG_MAX_ROUNDS.
RAG_TOOL_OUTCOMES: Final = (
    "ok",
    "no_results",
    "unknown_function",
    "invalid_arguments",
    "too_long",
    "failed",
    "over_rounds",
)
# How the passages reached the model: as a tool's output, or in the instructions up front.
RAG_MODES: Final = ("tools", "context")
RAG_SOURCES: Final = ("cited", "none")  # whether an answer came with posts as its sources
# A search of the SQLite index takes a few milliseconds (the benchmark's goal: p99 under 5 ms);
# fused search waits for a query's embedding as well.
RAG_SEARCH_BUCKETS: Final = (
    *(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 1.0),
)
RAG_ROUND_BUCKETS: Final = (0, 1, 2, 3, 4, 6, 8)  # LLMGW_RAG_MAX_ROUNDS is at most 8
DEFAULT_MAX_AGE: Final = 604_800.0  # LLMGW_POSTS_INDEX_MAX_AGE's default: a week


class IndexSizeLike(Protocol):
    @property
    def posts(self) -> int: ...
    @property
    def passages(self) -> int: ...


class IndexLike(Protocol):
    """What the metrics read of a posts index (app/posts' `PostsIndex`)."""

    @property
    def loaded(self) -> bool: ...
    @property
    def indexed_at(self) -> float | None: ...
    def size(self) -> IndexSizeLike: ...


class PostsIndexCollector(Collector):
    """The index's gauges, read from it at each scrape: passages and posts (0 without an
    index), whether one is loaded, its age (absent without one) and the age it may reach."""

    def __init__(self) -> None:
        self.index: IndexLike | None = None
        self.max_age = DEFAULT_MAX_AGE

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        index = self.index
        passages, posts, loaded, age, max_age = self._families()
        built = index.indexed_at if index is not None else None
        size = index.size() if index is not None else None
        passages.add_metric([], size.passages if size is not None else 0)
        posts.add_metric([], size.posts if size is not None else 0)
        loaded.add_metric([], 1 if index is not None and index.loaded else 0)
        if built is not None:
            age.add_metric([], max(0.0, time.time() - built))
        max_age.add_metric([], self.max_age)
        yield from (passages, posts, loaded, age, max_age)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "llmgw_posts_index_passages", "Passages in the posts index in use (0: none)."
            ),
            GaugeMetricFamily("llmgw_posts_index_posts", "Posts in the posts index in use."),
            GaugeMetricFamily("llmgw_posts_index_loaded", "1 while a posts index is loaded."),
            GaugeMetricFamily(
                "llmgw_posts_index_age_seconds",
                "Seconds since `llmgw posts index` built the index in use (absent: no index).",
            ),
            GaugeMetricFamily(
                "llmgw_posts_index_max_age_seconds",
                "The age past which the posts index is stale (LLMGW_POSTS_INDEX_MAX_AGE).",
            ),
        )


class RagMetrics:
    """The posts-reading half of `GatewayMetrics`, on its registry."""

    registry: CollectorRegistry

    def _rag_metrics(self) -> None:
        self._rag_tool_calls = Counter(
            "llmgw_rag_tool_calls_total",
            "The model's search_posts calls, by what became of them.",
            ["outcome"],
            registry=self.registry,
        )
        self._rag_search_seconds = Histogram(
            "llmgw_rag_search_seconds",
            "Time of one search of the posts index, by how its passages reach the model.",
            ["mode"],
            buckets=RAG_SEARCH_BUCKETS,
            registry=self.registry,
        )
        self._rag_passages = Counter(
            "llmgw_rag_passages_added_total",
            "Passages of the posts given to the model.", ["mode"], registry=self.registry,
        )  # fmt: skip
        self._rag_tokens = Counter(
            "llmgw_rag_tokens_added_total",
            "Tokens of passages given to the model (estimated).", ["mode"], registry=self.registry,
        )  # fmt: skip
        self._rag_rounds = Histogram(
            "llmgw_rag_rounds",
            "Tool rounds an answer took (0: the model searched nothing).",
            ["mode"],
            buckets=RAG_ROUND_BUCKETS,
            registry=self.registry,
        )
        self._rag_answers = Counter(
            "llmgw_rag_answers_total",
            "Answers offered the posts, by whether they came with posts as sources.",
            ["mode", "sources"],
            registry=self.registry,
        )
        self._posts_index = PostsIndexCollector()
        self.registry.register(self._posts_index)
        self._rag_outcomes = {
            outcome: self._rag_tool_calls.labels(outcome) for outcome in RAG_TOOL_OUTCOMES
        }
        for mode in RAG_MODES:
            for child in (self._rag_search_seconds, self._rag_passages, self._rag_tokens):
                child.labels(mode)
            self._rag_rounds.labels(mode)
            for sources in RAG_SOURCES:
                self._rag_answers.labels(mode, sources)

    def rag_tool_call(self, outcome: str) -> None:
        """One `search_posts` call of the model was answered, with this outcome."""
        label = bounded(outcome, RAG_TOOL_OUTCOMES)
        if (series := self._rag_outcomes.get(label)) is None:  # `other`
            series = self._rag_outcomes[label] = self._rag_tool_calls.labels(label)
        series.inc()

    def rag_search(self, seconds: float, passages: int, tokens: int, mode: str) -> None:
        """One search took `seconds` and gave the model `passages` passages of `tokens` tokens."""
        label = bounded(mode, RAG_MODES)
        self._rag_search_seconds.labels(label).observe(max(seconds, 0.0))
        self._rag_passages.labels(label).inc(max(passages, 0))
        self._rag_tokens.labels(label).inc(max(tokens, 0))

    def rag_answer(self, mode: str, rounds: int, sourced: bool) -> None:
        """An answer offered the posts ended after `rounds` tool rounds, with sources or not."""
        label = bounded(mode, RAG_MODES)
        self._rag_rounds.labels(label).observe(max(rounds, 0))
        self._rag_answers.labels(label, RAG_SOURCES[0] if sourced else RAG_SOURCES[1]).inc()

    def posts_index(self, index: IndexLike | None, *, max_age: float) -> None:
        """Export this index's size and age at each scrape (None: there is none), and the age
        past which it is stale."""
        self._posts_index.index = index
        self._posts_index.max_age = max_age
