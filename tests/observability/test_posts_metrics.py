"""The posts' metrics (issue 19): tool calls by outcome, searches, rounds, answers with sources,
and the posts index's size and age as a real gateway's /metrics shows them."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from chat_client import chat
from gateway_server import running_gateway
from posts_support import backdate, index_folder, write_posts
from prometheus_client.parser import text_string_to_metric_families
from sim_process import running_sim
from support import eventually, flushed, free_port

from app.telemetry import GatewayMetrics
from app.telemetry.rag_metrics import RAG_MODES, RAG_TOOL_OUTCOMES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from gateway_server import GatewayHandle
    from sim_process import SimHandle

DAY = 86_400.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # by name and labels


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A GatewayMetrics with its own registry: every test starts from zero."""
    return GatewayMetrics()


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    """A sample's value, or None when the series does not exist."""
    return metrics.registry.get_sample_value(name, labels)


@contextmanager
def posts_gateway(redis_url: str, **settings: object) -> Iterator[GatewayHandle]:
    """A gateway with these settings; no model behind it (none is asked: only /metrics is)."""
    upstream = f"http://127.0.0.1:{free_port()}"
    with running_gateway(upstream_url=upstream, redis_url=redis_url, **settings) as gateway:
        yield gateway


def scraped(url: str) -> dict[str, float]:
    """The gateway's llmgw_posts_index_* samples, by name, from one scrape of /metrics."""
    return {
        name: number
        for (name, labels), number in scrape(url).items()
        if name.startswith("llmgw_posts_index_") and not labels
    }


def scrape(url: str) -> Samples:
    """Every sample of one scrape of /metrics, by name and labels."""
    body = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample's value from a scrape (KeyError: no such series)."""
    return samples[name, frozenset(labels.items())]


def test_every_tool_outcome_and_mode_exists_at_zero(metrics: GatewayMetrics) -> None:
    """A first failing tool call is a rise from 0, not a new series: every outcome is there."""
    for outcome in RAG_TOOL_OUTCOMES:
        assert value(metrics, "llmgw_rag_tool_calls_total", outcome=outcome) == 0
    for mode in RAG_MODES:
        assert value(metrics, "llmgw_rag_search_seconds_count", mode=mode) == 0
        assert value(metrics, "llmgw_rag_passages_added_total", mode=mode) == 0
        for sources in ("cited", "none"):
            assert value(metrics, "llmgw_rag_answers_total", mode=mode, sources=sources) == 0


def test_tool_calls_searches_and_answers_are_counted(metrics: GatewayMetrics) -> None:
    """Calls by outcome, a search's time, passages and tokens, an answer's rounds and sources."""
    metrics.rag_tool_call("ok")
    metrics.rag_tool_call("invalid_arguments")
    metrics.rag_tool_call("what the model made up")
    metrics.rag_search(0.004, 3, 700, "tools")
    metrics.rag_search(0.002, 0, 0, "context")
    metrics.rag_answer("tools", 2, sourced=True)
    metrics.rag_answer("context", 0, sourced=False)
    assert value(metrics, "llmgw_rag_tool_calls_total", outcome="ok") == 1
    assert value(metrics, "llmgw_rag_tool_calls_total", outcome="invalid_arguments") == 1
    assert value(metrics, "llmgw_rag_tool_calls_total", outcome="other") == 1
    assert value(metrics, "llmgw_rag_search_seconds_bucket", mode="tools", le="0.005") == 1
    assert value(metrics, "llmgw_rag_search_seconds_bucket", mode="tools", le="0.003") == 0
    assert value(metrics, "llmgw_rag_passages_added_total", mode="tools") == 3
    assert value(metrics, "llmgw_rag_tokens_added_total", mode="tools") == 700
    assert value(metrics, "llmgw_rag_rounds_bucket", mode="tools", le="1.0") == 0
    assert value(metrics, "llmgw_rag_rounds_bucket", mode="tools", le="2.0") == 1
    assert value(metrics, "llmgw_rag_rounds_bucket", mode="context", le="0.0") == 1
    assert value(metrics, "llmgw_rag_answers_total", mode="tools", sources="cited") == 1
    assert value(metrics, "llmgw_rag_answers_total", mode="context", sources="none") == 1


def test_search_buckets_resolve_one_to_fifty_milliseconds(metrics: GatewayMetrics) -> None:
    """Several bounds between 1 and 50 ms, where a search of the index falls."""
    metrics.rag_search(0.001, 1, 10, "tools")
    family = next(f for f in metrics.registry.collect() if f.name == "llmgw_rag_search_seconds")
    bounds = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
    assert len({bound for bound in bounds if 0.001 <= bound <= 0.05}) >= 6


def test_a_gateway_shows_its_index_size_and_age(tmp_path: Path, redis_url: str) -> None:
    """A gateway with an index: its passages and posts, loaded, a fresh age, and the max age."""
    index = index_folder(write_posts(tmp_path / "blog"), tmp_path / "posts.sqlite3")
    with posts_gateway(
        redis_url,
        posts_index=str(index),
        posts_share="file",
        posts_index_max_age=DAY,
    ) as gateway:
        samples = scraped(gateway.url)
    assert samples["llmgw_posts_index_loaded"] == 1
    assert samples["llmgw_posts_index_posts"] == 3  # two Markdown posts and a page; no draft
    assert samples["llmgw_posts_index_passages"] >= 3
    assert 0 <= samples["llmgw_posts_index_age_seconds"] < 60
    assert samples["llmgw_posts_index_max_age_seconds"] == DAY


def test_an_old_index_is_older_than_its_max_age(tmp_path: Path, redis_url: str) -> None:
    """An index nobody re-built for two days shows an age past a one-day max age (the alert's
    comparison), growing from scrape to scrape with nothing re-indexed."""
    index = index_folder(write_posts(tmp_path / "blog"), tmp_path / "posts.sqlite3")
    backdate(index, 2 * DAY)
    with posts_gateway(
        redis_url,
        posts_index=str(index),
        posts_share="file",
        posts_index_max_age=DAY,
    ) as gateway:
        first = scraped(gateway.url)["llmgw_posts_index_age_seconds"]
        assert eventually(
            lambda: scraped(gateway.url)["llmgw_posts_index_age_seconds"] > first, timeout=5
        )
    assert 2 * DAY <= first < 2 * DAY + 60  # past the max age of one day


def test_a_gateway_without_an_index_shows_none(redis_url: str) -> None:
    """No index and none configured: not loaded, 0 passages, no age (nothing to alert on), and
    the max age still there."""
    with posts_gateway(redis_url) as gateway:
        samples = scraped(gateway.url)
    assert samples["llmgw_posts_index_loaded"] == 0
    assert samples["llmgw_posts_index_passages"] == 0
    assert "llmgw_posts_index_age_seconds" not in samples
    assert samples["llmgw_posts_index_max_age_seconds"] == 604_800


def test_an_index_built_after_the_gateway_started_is_picked_up(
    tmp_path: Path, redis_url: str
) -> None:
    """LLMGW_POSTS_INDEX set but not built yet: the gateway follows the file, and shows the
    index once `llmgw posts index` has made it."""
    index = tmp_path / "posts.sqlite3"
    with posts_gateway(
        redis_url,
        posts_index=str(index),
        posts_share="file",
        posts_refresh_seconds=1,
    ) as gateway:
        assert scraped(gateway.url)["llmgw_posts_index_loaded"] == 0
        index_folder(write_posts(tmp_path / "blog"), index)
        assert eventually(lambda: scraped(gateway.url)["llmgw_posts_index_loaded"] == 1, timeout=10)
        assert scraped(gateway.url)["llmgw_posts_index_posts"] == 3


@pytest.fixture(scope="module")
def tool_sim() -> Iterator[SimHandle]:
    """A sim that calls search_posts for a question (one ending in ?) when it is offered."""
    with running_sim("--decode-rate", "400", "--prefill-rate", "20000") as handle:
        yield handle


@pytest.mark.parametrize("mode", ["tools", "context"])
def test_chats_that_read_the_posts_are_counted_on_metrics(
    mode: str, tool_sim: SimHandle, tmp_path: Path, redis_url: str
) -> None:
    """A question the posts answer and a greeting, through a real gateway reading a real index:
    its /metrics counts the search (tools: the model's call, ok), the passages and tokens
    given, the rounds, and one answer with sources and one without."""
    index = index_folder(write_posts(tmp_path / "blog"), tmp_path / "posts.sqlite3")
    settings = {"rag": mode, "posts_index": str(index), "posts_share": "file"}
    upstream = tool_sim.healthy().url
    with running_gateway(
        upstream_url=upstream, redis_url=flushed(redis_url), reasoning_effort="none", **settings
    ) as gateway:
        assert (
            chat(gateway.url, {"input": "What did you write about Tailscale Funnel?"}).status == 200
        )
        assert chat(gateway.url, {"input": "Zzyzx qwfp"}).status == 200
        samples = scrape(gateway.url)
    searches = 2 if mode == "context" else 1  # context searches every chat's words
    assert sample(samples, "llmgw_rag_search_seconds_count", mode=mode) == searches
    assert sample(samples, "llmgw_rag_passages_added_total", mode=mode) >= 1
    assert sample(samples, "llmgw_rag_tokens_added_total", mode=mode) >= 10
    assert sample(samples, "llmgw_rag_answers_total", mode=mode, sources="cited") == 1
    assert sample(samples, "llmgw_rag_answers_total", mode=mode, sources="none") == 1
    assert sample(samples, "llmgw_rag_rounds_count", mode=mode) == 2
    calls = 1 if mode == "tools" else 0
    assert sample(samples, "llmgw_rag_tool_calls_total", outcome="ok") == calls
    assert sample(samples, "llmgw_rag_rounds_sum", mode=mode) == calls
