"""Visitor passes at the door, through real gateways on a real Redis and a real sim: a challenge,
its solution, the pass it buys once, and the chats it lets through; refusals are JSON 4xx and
nothing reaches the model."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from chat_client import chat
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key
from pass_support import posted, solve
from sim_process import running_sim
from support import flushed

from app.access.passes import issue_pass

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sim_process import SimHandle

MODEL = "nvidia/nemotron-3-nano"
PASS_KEY = "a-made-up-pass-key-of-forty-characters-0"
CHEAP = {"pass_base_number": 500, "pass_key": PASS_KEY, "global_limit": 1000, "visitor_limit": 1000}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim() as handle:
        yield handle


def gateway(sim: SimHandle, redis_url: str, **settings: Any) -> Any:
    return running_gateway(upstream_url=sim.url, redis_url=redis_url, **{**CHEAP, **settings})


def a_pass(url: str, headers: dict[str, str] | None = None) -> str:
    """Ask for a challenge, solve it, and trade the solution for a pass."""
    made = httpx.get(f"{url}/api/pass/challenge", headers=headers, timeout=10).json()
    granted = httpx.post(
        f"{url}/api/pass", json={"payload": posted(solve(made))}, headers=headers, timeout=10
    )
    assert granted.status_code == 200, granted.text
    return str(granted.json()["pass"])


def test_required_refuses_a_chat_without_a_pass_and_nothing_reaches_the_model(
    sim: SimHandle, redis_url: str
) -> None:
    """`required`: a script with no pass gets 401 pass_required, the sim's `started` does not
    move; with a pass it chats."""
    with gateway(sim, flushed(redis_url), pass_mode="required") as handle:
        before = sim.stats()["started"]
        refused = chat(handle.url)
        assert (refused.status, refused.json["code"]) == (401, "pass_required")
        assert sim.stats()["started"] == before
        token = a_pass(handle.url)
        received = chat(handle.url, headers={"X-Visitor-Pass": token})
        assert received.status == 200
        assert "response.completed" in received.types()


def test_adaptive_at_low_pressure_lets_a_plain_chat_through(sim: SimHandle, redis_url: str) -> None:
    """`adaptive` (the default) with the governor relaxed: curl chats as before."""
    with gateway(sim, flushed(redis_url)) as handle:
        assert chat(handle.url).status == 200


def test_a_solution_buys_one_pass_even_on_two_racing_gateways(
    sim: SimHandle, redis_url: str
) -> None:
    """The same solution twice: one pass, then 400 `spent`; posted at once to two gateways
    sharing Redis: still one pass."""
    url = flushed(redis_url)
    with gateway(sim, url) as first, gateway(sim, url) as second:
        made = httpx.get(f"{first.url}/api/pass/challenge", timeout=10).json()
        body = {"payload": posted(solve(made))}
        assert httpx.post(f"{first.url}/api/pass", json=body).status_code == 200
        again = httpx.post(f"{first.url}/api/pass", json=body)
        assert (again.status_code, again.json()["reason"]) == (400, "spent")

        made = httpx.get(f"{first.url}/api/pass/challenge", timeout=10).json()
        body = {"payload": posted(solve(made))}
        urls = [first.url, second.url] * 4
        with ThreadPoolExecutor(len(urls)) as pool:
            answers = list(pool.map(lambda u: httpx.post(f"{u}/api/pass", json=body), urls))
        statuses = [answer.status_code for answer in answers]
        assert sorted(statuses) == [200] + [400] * 7


@pytest.mark.parametrize(
    ("case", "reason"),
    [("expired", "expired"), ("tampered", "bad_signature"), ("foreign", "foreign_network")],
)
def test_a_bad_pass_is_refused_with_its_reason(
    sim: SimHandle, redis_url: str, case: str, reason: str
) -> None:
    """An expired, a tampered, or another network's pass: 401 pass_invalid naming why, and
    nothing reaches the model."""
    with gateway(sim, flushed(redis_url), trusted_proxies="127.0.0.1/32") as handle:
        token = a_pass(handle.url)
        headers = {"X-Visitor-Pass": token}
        if case == "expired":
            old = time.time() - 3_600
            headers["X-Visitor-Pass"] = issue_pass(
                "127.0.0.0/24", key=PASS_KEY.encode(), seconds=60, now=old
            )
        elif case == "tampered":
            headers["X-Visitor-Pass"] = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        else:
            headers["X-Forwarded-For"] = "198.51.100.7"  # another /24 than the pass's
        before = sim.stats()["started"]
        refused = chat(handle.url, headers=headers)
        assert (refused.status, refused.json["code"], refused.json["reason"]) == (
            401,
            "pass_invalid",
            reason,
        )
        assert sim.stats()["started"] == before


def test_difficulty_rises_while_one_network_floods_and_falls_after(
    sim: SimHandle, redis_url: str
) -> None:
    """A network asking for challenges beyond its share gets dearer ones (a step per
    doubling); another network does not; after the window, the price is back to base."""
    settings = {"pass_network_share": 2, "window_seconds": 2}
    with gateway(sim, flushed(redis_url), trusted_proxies="127.0.0.1/32", **settings) as handle:

        def price(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            made = httpx.get(f"{handle.url}/api/pass/challenge", headers=headers).json()
            return int(made["maxNumber"])

        flood = [price("203.0.113.9") for _ in range(8)]
        assert flood[:2] == [500, 500]
        assert flood[-1] == 500 * 4  # 8 challenges, a share of 2: two doublings
        assert price("198.51.100.1") == 500
        time.sleep(2.2)
        assert price("203.0.113.9") == 500


def test_a_network_past_its_normal_rate_needs_a_pass_and_others_do_not(
    sim: SimHandle, redis_url: str
) -> None:
    """`adaptive` at low pressure: one network's chats without a pass, counted across two
    gateways, are admitted up to LLMGW_PASS_NETWORK_CHATS per window; the next is 401
    pass_required and reaches no model. With a pass that network chats again; another network
    chats without one all along; after the window, plain chats are back."""
    url = flushed(redis_url)
    settings = {"pass_network_chats": 3, "window_seconds": 6, "trusted_proxies": "127.0.0.1/32"}
    with gateway(sim, url, **settings) as first, gateway(sim, url, **settings) as second:

        def visitor(number: int, network: str = "203.0.113") -> dict[str, str]:
            return {"X-Forwarded-For": f"{network}.{number}"}

        # Three visitors of one /24, on either replica: within the network's normal rate.
        assert [
            chat(g.url, headers=visitor(n)).status for n, g in enumerate((first, second, first))
        ] == [200] * 3
        before = sim.stats()["started"]
        crowded = chat(second.url, headers=visitor(9))
        assert (crowded.status, crowded.json["code"]) == (401, "pass_required")
        assert sim.stats()["started"] == before
        token = a_pass(first.url, headers=visitor(9))
        with_pass = chat(second.url, headers={**visitor(9), "X-Visitor-Pass": token})
        assert with_pass.status == 200
        assert chat(first.url, headers=visitor(1, "198.51.100")).status == 200
        metrics = httpx.get(f"{second.url}/metrics").text
        time.sleep(6.2)
        assert chat(first.url, headers=visitor(9)).status == 200
    assert 'llmgw_pass_refused_total{check="pass",reason="network"} 1.0' in metrics


def test_keys_need_no_pass(sim: SimHandle, redis_url: str) -> None:
    """In `required`, a keyed client (the owner's tools) chats without any pass."""
    url = flushed(redis_url)
    with gateway(sim, url, pass_mode="required", key_secret=KEY_SECRET) as handle:
        key = create_key(url, "laptop", lane="owner")
        answer = httpx.post(
            f"{handle.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200


def test_passes_off_answers_404_and_bad_bodies_are_400(sim: SimHandle, redis_url: str) -> None:
    """`off`: the pass routes are 404 (as an older gateway's); on, a body that is not a
    solution is a 400 with its reason, never a 500."""
    with gateway(sim, flushed(redis_url), pass_mode="off") as handle:
        assert httpx.get(f"{handle.url}/api/pass/challenge").status_code == 404
    with gateway(sim, flushed(redis_url)) as handle:
        for body in (b"", b"[]", b'{"payload": 3}', b'{"payload": "bm90IGpzb24="}'):
            answer = httpx.post(f"{handle.url}/api/pass", content=body)
            assert answer.status_code == 400, body
            assert "code" in answer.json()


def test_a_pass_is_good_for_its_chats_only(sim: SimHandle, redis_url: str) -> None:
    """A pass for 2 chats: the third is 401 pass_invalid `spent` (counted in the admission
    script across replicas) and reaches no model; a new pass chats again."""
    url = flushed(redis_url)
    with (
        gateway(sim, url, pass_mode="required", pass_chats=2) as first,
        gateway(sim, url, pass_mode="required", pass_chats=2) as second,
    ):
        token = a_pass(first.url)
        headers = {"X-Visitor-Pass": token}
        assert chat(first.url, headers=headers).status == 200
        assert chat(second.url, headers=headers).status == 200
        before = sim.stats()["started"]
        spent = chat(first.url, headers=headers)
        assert (spent.status, spent.json["code"], spent.json["reason"]) == (
            401,
            "pass_invalid",
            "spent",
        )
        assert sim.stats()["started"] == before
        assert chat(second.url, headers={"X-Visitor-Pass": a_pass(second.url)}).status == 200
        metrics = httpx.get(f"{first.url}/metrics").text
        readyz = httpx.get(f"{first.url}/readyz").json()
    assert 'llmgw_pass_refused_total{check="pass",reason="spent"} 1.0' in metrics
    assert "llmgw_pass_granted_total 1.0" in metrics  # first's one; second granted its own
    assert readyz["pass"] == {"mode": "required", "steps": 0, "required": True}
