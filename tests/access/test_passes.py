"""Visitor passes' parts (issue 16): ALTCHA challenges solved as the widget's worker solves them,
the refusals with their reasons, a challenge spent once on a real Redis, and the signed pass."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from typing import Any

import pytest
import redis.asyncio as aioredis
from pass_support import posted, solve

from app.access.passes import (
    MAX_NUMBER_CEILING,
    PassInfo,
    Refusal,
    Refused,
    Solution,
    challenge,
    issue_pass,
    network_of,
    read_pass,
    spend_once,
    verify_solution,
)

KEY = b"k" * 32
NOW = 1_800_000_000.0
NETWORK = "203.0.113.0/24"


def small_challenge(key: bytes = KEY, expires_seconds: float = 300) -> dict[str, Any]:
    return challenge(0, key=key, base_max_number=2000, expires_seconds=expires_seconds, now=NOW)


def test_a_brute_forced_solution_is_verified_whether_base64_or_json() -> None:
    """A solved challenge is good until its expiry, posted either way the widget might."""
    made = small_challenge()
    solution = solve(made)
    for payload in (posted(solution), json.dumps(solution), json.dumps(solution).encode()):
        assert verify_solution(payload, key=KEY, now=NOW) == Solution(
            made["signature"], int(NOW) + 300
        )


def test_the_challenge_is_altchas_shape_with_its_expiry_in_the_salt() -> None:
    """The widget gets the fields it reads; each challenge has a salt of its own."""
    made = small_challenge()
    assert set(made) == {"algorithm", "challenge", "maxNumber", "salt", "signature"}
    assert made["algorithm"] == "SHA-256"
    query = urllib.parse.parse_qs(made["salt"].partition("?")[2])
    assert query["expires"] == [str(int(NOW) + 300)]
    assert small_challenge()["salt"] != made["salt"]


def test_each_step_doubles_the_work_up_to_the_ceiling() -> None:
    """The max number (twice the expected hashes) doubles per step and stops at the ceiling."""

    def max_number(steps: int, ceiling: int = MAX_NUMBER_CEILING) -> int:
        made = challenge(
            steps, key=KEY, base_max_number=50_000, expires_seconds=60, ceiling=ceiling
        )
        return int(made["maxNumber"])

    assert [max_number(steps) for steps in range(4)] == [50_000, 100_000, 200_000, 400_000]
    assert max_number(1_000_000) == MAX_NUMBER_CEILING
    assert max_number(5, ceiling=120_000) == 120_000
    with pytest.raises(ValueError, match="steps"):
        max_number(-1)


def refused_as(payload: str | bytes, key: bytes = KEY, now: float = NOW) -> Refusal | None:
    answer = verify_solution(payload, key=key, now=now)
    return answer.reason if isinstance(answer, Refused) else None


def with_field(solution: dict[str, Any], **fields: Any) -> str:
    return posted({**solution, **fields})


def test_refusals_say_why() -> None:
    """Junk is malformed, another key's challenge is badly signed, a wrong number is wrong, and
    a late one has expired."""
    solution = solve(small_challenge())
    wrong_signature = ("0" if solution["signature"][0] != "0" else "1") + solution["signature"][1:]
    cases: list[tuple[str | bytes, Refusal]] = [
        ("not base64!", Refusal.MALFORMED),
        (base64.b64encode(b"not json").decode(), Refusal.MALFORMED),
        (json.dumps({"number": 1}), Refusal.MALFORMED),
        (with_field(solution, number=str(solution["number"])), Refusal.MALFORMED),
        (with_field(solution, number=-1), Refusal.MALFORMED),
        (with_field(solution, algorithm="SHA-1"), Refusal.MALFORMED),
        (with_field(solution, signature=solution["signature"].upper()), Refusal.MALFORMED),
        (with_field(solution, took="x" * 1000), Refusal.MALFORMED),  # over the size limit
        (posted(solve(small_challenge(key=b"o" * 32))), Refusal.BAD_SIGNATURE),
        (with_field(solution, signature=wrong_signature), Refusal.BAD_SIGNATURE),
        (with_field(solution, number=solution["number"] + 1), Refusal.WRONG_ANSWER),
        (with_field(solution, salt=solution["salt"] + "x"), Refusal.WRONG_ANSWER),
    ]
    assert [refused_as(payload) for payload, _ in cases] == [reason for _, reason in cases]
    assert refused_as(posted(solution), now=NOW + 299) is None
    assert refused_as(posted(solution), now=NOW + 300) == Refusal.EXPIRED


def test_a_salt_cut_apart_elsewhere_is_still_the_same_challenge_to_spend() -> None:
    """Salt + "1" with number 23 hashes as number 123 does: both spend one signature."""
    solution = solve(small_challenge())
    # A number to cut has two digits or more, the second not 0 (JSON has no 023).
    while len(str(solution["number"])) < 2 or str(solution["number"])[1] == "0":
        solution = solve(small_challenge())
    digits = str(solution["number"])
    cut = with_field(solution, salt=solution["salt"] + digits[0], number=int(digits[1:]))
    assert verify_solution(cut, key=KEY, now=NOW) == verify_solution(
        posted(solution), key=KEY, now=NOW
    )


async def spend_twice(url: str, together: bool) -> list[bool]:
    """Two clients (two replicas) spending one solution, one after the other or at once."""
    solution = verify_solution(posted(solve(small_challenge())), key=KEY, now=NOW)
    assert isinstance(solution, Solution)
    first, second = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    try:
        if together:
            spends = [spend_once(client, "llmgw", solution, now=NOW) for client in (first, second)]
            return list(await asyncio.gather(*spends))
        return [await spend_once(client, "llmgw", solution, now=NOW) for client in (first, second)]
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("together", [False, True], ids=["in-turn", "at-once"])
def test_a_solution_is_spent_once_across_replicas(redis_url: str, together: bool) -> None:
    """The same solution twice, in turn or racing, is good once."""
    assert sorted(asyncio.run(spend_twice(redis_url, together))) == [False, True]


def test_a_spent_challenge_is_remembered_until_it_expires_under_the_hash_tag(
    redis_url: str,
) -> None:
    """One key under `{prefix}:`, kept for the challenge's remaining life and no longer."""

    async def scenario() -> tuple[list[bytes | str], int]:
        solution = Solution("ab" * 32, int(NOW) + 300)
        async with aioredis.Redis.from_url(redis_url) as client:
            await spend_once(client, "llmgw", solution, now=NOW + 100)
            keys = await client.keys("*")
            return keys, await client.pttl(keys[0])

    keys, milliseconds = asyncio.run(scenario())
    assert keys == [b"{llmgw}:spent-challenge:" + b"ab" * 32]
    assert 199_000 < milliseconds <= 200_000


def test_a_pass_reads_back_from_its_network_until_it_expires() -> None:
    """Id, chats and expiry come back; each pass has an id of its own; the text is URL-safe."""
    token = issue_pass(NETWORK, key=KEY, seconds=1800, chats=7, now=NOW)
    info = read_pass(token, NETWORK, key=KEY, now=NOW + 1799)
    assert isinstance(info, PassInfo)
    assert (info.expires, info.chats, len(info.id)) == (int(NOW) + 1800, 7, 24)
    assert len(token) == 60
    assert urllib.parse.quote(token, safe="") == token
    others = {issue_pass(NETWORK, key=KEY, now=NOW) for _ in range(50)}
    ids = {getattr(read_pass(other, NETWORK, key=KEY, now=NOW), "id", None) for other in others}
    assert len(ids) == 50
    assert None not in ids


def pass_refused_as(token: str, network: str = NETWORK, key: bytes = KEY, now: float = NOW) -> Any:
    answer = read_pass(token, network, key=key, now=now)
    return answer.reason if isinstance(answer, Refused) else answer


def tampered(token: str, at: int) -> str:
    replacement = "A" if token[at] != "A" else "B"
    return token[:at] + replacement + token[at + 1 :]


def test_an_expired_tampered_or_foreign_pass_is_refused() -> None:
    """Each refusal names its reason; an address in the same /24 keeps the pass."""
    token = issue_pass(NETWORK, key=KEY, seconds=60, now=NOW)
    cases = [
        (pass_refused_as(token, now=NOW + 60), Refusal.EXPIRED),
        (pass_refused_as(token, network="198.51.100.0/24"), Refusal.FOREIGN_NETWORK),
        (pass_refused_as(token, key=b"o" * 32), Refusal.BAD_SIGNATURE),
        (pass_refused_as(tampered(token, 10)), Refusal.BAD_SIGNATURE),
        (pass_refused_as(tampered(token, 59)), Refusal.BAD_SIGNATURE),
        (pass_refused_as(tampered(token, 0)), Refusal.MALFORMED),  # the version byte
        (pass_refused_as(token[:-1]), Refusal.MALFORMED),
        (pass_refused_as(token[:-1] + "="), Refusal.MALFORMED),
        (pass_refused_as("é" * 60), Refusal.MALFORMED),
    ]
    assert [got for got, _ in cases] == [reason for _, reason in cases]
    assert isinstance(pass_refused_as(token, network=network_of("203.0.113.250")), PassInfo)


@pytest.mark.parametrize(
    ("address", "network"),
    [("203.0.113.7", "203.0.113.0/24"), ("10.1.2.255", "10.1.2.0/24"),
     ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
     ("2001:db8:1:2::1", "2001:db8:1:2::/64"), ("::ffff:203.0.113.9", "203.0.113.0/24")],
)  # fmt: skip
def test_a_network_is_the_addresss_24_or_64(address: str, network: str) -> None:
    """A home's IPv6 /64 and an IPv4 /24 are one network; a mapped IPv4 counts as IPv4."""
    assert network_of(address) == network


def test_text_that_is_no_address_has_no_network() -> None:
    """The caller decides what an unknown peer gets; no network is made up."""
    with pytest.raises(ValueError, match="does not appear to be"):
        network_of("unknown")
