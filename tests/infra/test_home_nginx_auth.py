"""Two doors on the home machine: nginx checks the gateway's token, LM Studio its own API token
(Require Authentication, LM Studio 0.4), which nginx sends in place of the caller's."""

from __future__ import annotations

import secrets
from functools import partial
from typing import TYPE_CHECKING

import httpx
import pytest
from fault_servers import answering_server
from home_nginx import NginxHandle, running_nginx
from httpx_sse import connect_sse
from sim_process import SimHandle, running_sim
from support import eventually, require_binary

from app.protection.outage import TokenDoor, token_door

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

# Fresh for each run, so no test can rely on a fixed one.
GATEWAY_TOKEN = secrets.token_hex(32)  # LLMGW_UPSTREAM_TOKEN, a line of nginx's tokens.map
LMSTUDIO_TOKEN = f"sk-lm-{secrets.token_hex(8)}:{secrets.token_hex(16)}"  # from LM Studio's UI
WRONG_TOKEN = secrets.token_hex(32)
LISTINGS = ("/v1/models", "/api/v0/models", "/api/v1/models")


@pytest.fixture(scope="module")
def locked_sim() -> Iterator[SimHandle]:
    """LM Studio with Require Authentication on: only its own token gets in."""
    with running_sim("--api-key", LMSTUDIO_TOKEN, "--output-tokens", "4") as handle:
        yield handle


@pytest.fixture
def sim(locked_sim: SimHandle) -> SimHandle:
    return locked_sim.healthy()


def nginx_in_front(
    upstream: str, prefix: Path, lmstudio_token: str = ""
) -> AbstractContextManager[NginxHandle]:
    """The home nginx in front of upstream, admitting the gateway's token."""
    binary = require_binary("nginx")
    return running_nginx(
        binary, prefix, upstream=upstream, tokens=(GATEWAY_TOKEN,), lmstudio_token=lmstudio_token
    )


@pytest.fixture(scope="module")
def forwarding(
    locked_sim: SimHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxHandle]:
    """nginx with LLMGW_LMSTUDIO_API_TOKEN set to LM Studio's token."""
    prefix = tmp_path_factory.mktemp("forwarding")
    with nginx_in_front(f"127.0.0.1:{locked_sim.port}", prefix, LMSTUDIO_TOKEN) as handle:
        yield handle


@pytest.fixture(scope="module")
def bare(locked_sim: SimHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxHandle]:
    """nginx with LLMGW_LMSTUDIO_API_TOKEN empty, in front of an LM Studio that wants one."""
    prefix = tmp_path_factory.mktemp("bare")
    with nginx_in_front(f"127.0.0.1:{locked_sim.port}", prefix) as handle:
        yield handle


def call(nginx: NginxHandle, method: str, path: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"input": "Hello", "stream": True} if method == "POST" else None
    with httpx.Client(base_url=nginx.url, timeout=10.0) as client:
        return client.request(method, path, json=body, headers=headers)


def test_chat_streams_with_lm_studios_token(forwarding: NginxHandle, sim: SimHandle) -> None:
    """With LM Studio's token set, a chat streams through both doors to its end."""
    body = {"input": "Hello", "stream": True}
    headers = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
    with (
        httpx.Client(base_url=forwarding.url, timeout=10.0) as client,
        connect_sse(client, "POST", "/v1/responses", json=body, headers=headers) as sse,
    ):
        assert sse.response.status_code == 200
        kinds = [event.event for event in sse.iter_sse()]
    assert kinds[-1] == "response.completed"
    assert sim.stats()["unauthorized"] == 0


@pytest.mark.parametrize("path", LISTINGS)
def test_model_listings_pass_with_lm_studios_token(
    forwarding: NginxHandle, sim: SimHandle, path: str
) -> None:
    """The health check's and the probe's model listings pass both doors too."""
    response = call(forwarding, "GET", path, GATEWAY_TOKEN)
    assert response.status_code == 200, response.text
    assert sim.stats()["unauthorized"] == 0


@pytest.mark.parametrize(
    ("lmstudio_token", "forwarded"),
    [(LMSTUDIO_TOKEN, f"Bearer {LMSTUDIO_TOKEN}"), ("", None)],
    ids=["lm-studio-token-set", "no-lm-studio-token"],
)
def test_lm_studio_gets_its_own_token_or_none_never_the_gateways(
    tmp_path: Path, lmstudio_token: str, forwarded: str | None
) -> None:
    """LM Studio receives its own token when one is set and no Authorization header when not."""
    seen: list[dict[str, str]] = []
    with (
        answering_server(200, {"Content-Type": "application/json"}, b"{}", seen) as upstream,
        nginx_in_front(upstream.removeprefix("http://"), tmp_path, lmstudio_token) as nginx,
    ):
        assert call(nginx, "GET", "/v1/models", GATEWAY_TOKEN).status_code == 200
    (headers,) = seen
    authorization = {name.lower(): value for name, value in headers.items()}.get("authorization")
    assert authorization == forwarded


def test_lm_studios_refusal_is_told_from_nginxs(bare: NginxHandle, sim: SimHandle) -> None:
    """Without LM Studio's token its own 401 comes back, and the gateway reads it as that door."""
    response = call(bare, "POST", "/v1/responses", GATEWAY_TOKEN)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert token_door(response.content) is TokenDoor.NGINX_LMSTUDIO
    assert "www-authenticate" not in response.headers  # nginx's challenge is for its own door
    assert sim.stats()["unauthorized"] == 1


def test_wrong_gateway_token_gets_nginxs_refusal(forwarding: NginxHandle, sim: SimHandle) -> None:
    """A wrong gateway token is refused by nginx, with its own code, before LM Studio is asked."""
    response = call(forwarding, "POST", "/v1/responses", WRONG_TOKEN)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "nginx_token_invalid"
    assert token_door(response.content) is TokenDoor.GATEWAY_NGINX
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert sim.stats()["unauthorized"] == 0
    assert sim.stats()["started"] == 0


def logged(log: Path, line: str) -> bool:
    return line in log.read_text()


def test_no_token_reaches_nginxs_logs(
    forwarding: NginxHandle, bare: NginxHandle, sim: SimHandle
) -> None:
    """Accepted and refused requests at both doors are logged; none of the tokens ever is."""
    for nginx in (forwarding, bare):
        for token in (GATEWAY_TOKEN, WRONG_TOKEN):
            call(nginx, "GET", "/v1/models", token)
    for nginx in (forwarding, bare):
        assert eventually(partial(logged, nginx.access_log, '"GET /v1/models HTTP/1.1" 401 '))
    logs = [n.access_log.read_text() + n.error_log.read_text() for n in (forwarding, bare)]
    assert '"GET /v1/models HTTP/1.1" 200 ' in logs[0]
    for token in (GATEWAY_TOKEN, LMSTUDIO_TOKEN, WRONG_TOKEN):
        assert all(token not in log for log in logs)
