"""The official openai SDK, unchanged, against the gateway: it lists the models with a key and
raises its own AuthenticationError for a bad one."""

from __future__ import annotations

import openai
import pytest
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key
from sim_process import running_sim

from app.access.keys import new_key

pytestmark = pytest.mark.slow


def test_the_sdk_lists_models_with_a_key_and_refuses_a_bad_one(redis_url: str) -> None:
    """models.list() gives the sim's model; a stranger's key is openai.AuthenticationError."""
    key = create_key(redis_url, "sdk", lane="member")
    with (
        running_sim() as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, key_secret=KEY_SECRET) as gw,
    ):
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
        listed = [model.id for model in client.models.list()]
        stranger = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=new_key(), max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            stranger.models.list()
    assert listed == ["nvidia/nemotron-3-nano"]
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
