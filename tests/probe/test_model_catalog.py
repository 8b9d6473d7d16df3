"""The model catalog read from the real sim's three listings, LM Studio's shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from sim_process import running_sim

from probe.model_catalog import Listing, ModelState, ModelView, parse
from sim.config import EMBEDDING_MODEL, SimConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sim_process import SimHandle

MODEL = SimConfig().model
REST = (Listing.REST_V1, Listing.REST_V0)


@pytest.fixture(scope="module")
def asleep() -> Iterator[SimHandle]:
    """A sim whose model is downloaded but not loaded, with an embedding model listed too."""
    with running_sim(
        "--jit", "--load-seconds", "0", "--embedding-model", "--context-length", "8192"
    ) as sim:
        yield sim


def catalog_of(sim: SimHandle, listing: Listing, model: str | None) -> ModelView:
    body = httpx.get(sim.url + listing, timeout=5).json()
    catalog = parse(listing, body)
    assert catalog is not None
    return catalog.view(model)


@pytest.mark.parametrize("listing", REST)
def test_a_downloaded_model_not_loaded_is_asleep_not_missing(
    asleep: SimHandle, listing: Listing
) -> None:
    """JIT's "downloaded but not loaded" reads as sleeping: the next request wakes it."""
    view = catalog_of(asleep, listing, MODEL)
    assert view.state is ModelState.SLEEPING


@pytest.mark.parametrize("listing", REST)
def test_a_model_not_downloaded_is_missing(asleep: SimHandle, listing: Listing) -> None:
    """A model name the server does not have is missing: nothing would ever load it."""
    assert catalog_of(asleep, listing, "nobody/not-here").state is ModelState.MISSING


@pytest.mark.parametrize("listing", REST)
def test_an_embedding_model_is_not_a_chat_model(asleep: SimHandle, listing: Listing) -> None:
    """Naming the embedding model is a configuration error, however loaded it is."""
    assert catalog_of(asleep, listing, EMBEDDING_MODEL).state is ModelState.NOT_AN_LLM


def test_loaded_model_is_ready_with_its_context_length(asleep: SimHandle) -> None:
    """Once loaded, v1 says ready and gives the loaded context length."""
    httpx.post(asleep.url + "/api/v1/models/load", json={"model": MODEL}, timeout=10)
    view = catalog_of(asleep, Listing.REST_V1, MODEL)
    assert (view.state, view.context_length) == (ModelState.READY, 8192)
    assert catalog_of(asleep, Listing.REST_V0, None).state is ModelState.READY


def test_an_unexpected_endpoint_answer_is_no_listing() -> None:
    """LM Studio's 200 'Unexpected endpoint' body for a path it lacks is not a catalog."""
    body = {"error": "Unexpected endpoint or method. (GET /api/v1/models)"}
    assert parse(Listing.REST_V1, body) is None
    assert parse(Listing.REST_V0, body) is None


def test_an_openai_only_server_lists_what_it_serves() -> None:
    """A server that is not LM Studio: listed is ready, unlisted unknown (not missing)."""
    catalog = parse(Listing.OPENAI, {"data": [{"id": "llama-3"}]})
    assert catalog is not None
    assert catalog.view("llama-3").state is ModelState.READY
    assert catalog.view("other").state is ModelState.UNKNOWN


@pytest.mark.parametrize("listing", REST)
def test_whether_the_model_is_trained_for_tool_use_is_read_from_both_rest_listings(
    asleep: SimHandle, listing: Listing
) -> None:
    """`auto` posts reading picks tools or context from it (app/rag/plan.py)."""
    assert catalog_of(asleep, listing, MODEL).tool_use is True
    with running_sim("--not-trained-for-tool-use") as untrained:
        assert catalog_of(untrained, listing, MODEL).tool_use is False


def test_a_listing_that_does_not_say_leaves_tool_use_unknown(asleep: SimHandle) -> None:
    assert catalog_of(asleep, Listing.OPENAI, MODEL).tool_use is None
