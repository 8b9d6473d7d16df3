"""Energy per answer in the sim's stack: the answers' attributed energy sums to what the host
measured while they ran, and a host without a power source has no energy series."""

from __future__ import annotations

import threading

import pytest
from chat_client import chat
from energy_stack import IDLE_WATTS, powered_replicas, powered_stack, scrape, total
from support import eventually

STREAM_WATTS = 45.0


def attributed_answers(text: str) -> float:
    return total(text, "llmgw_answer_energy_joules_count")


@pytest.mark.parametrize("at_once", [1, 3], ids=["one-at-a-time", "three-at-once"])
def test_attributed_energy_sums_to_the_measured(redis_url: str, at_once: int) -> None:
    """Answers one after another (or three at once) get, together, the energy the host's
    counter measured from before the first to after the last, within 5%: the idle baseline
    of the gaps between them is nobody's."""
    rounds = 4
    with powered_stack(redis_url, {"box": STREAM_WATTS}) as (gateway, sims):
        before = sims["box"].stats()["energy_joules"]

        def one_after_another() -> None:
            for _ in range(rounds):
                assert chat(gateway.url).status == 200

        threads = [threading.Thread(target=one_after_another) for _ in range(at_once)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        measured = sims["box"].stats()["energy_joules"] - before
        answers = rounds * at_once
        settled = eventually(lambda: attributed_answers(scrape(gateway)) == answers, timeout=15)
        text = scrape(gateway)
        assert settled, f"{attributed_answers(text)} of {answers} answers settled"
        attributed = total(text, "llmgw_energy_attributed_joules_total", host="box")
        assert attributed == pytest.approx(measured, rel=0.05)
        marginal = total(text, "llmgw_energy_marginal_joules_total", host="box")
        assert 0 < marginal < attributed
        assert total(text, "llmgw_host_energy_joules_total", host="box") >= attributed
        # The probe's baseline, re-exported (its own accuracy is the probe's tests' matter: on
        # a loaded machine its intervals' timing blurs it by a few watts).
        assert total(text, "llmgw_host_idle_power_watts", host="box") == pytest.approx(
            IDLE_WATTS, rel=0.5
        )


def test_a_host_without_a_power_source_has_no_energy_series(redis_url: str) -> None:
    """Two hosts, one with power and one without: chats on both are answered, the one without
    has no energy series at all (not zeros), its answers are still counted for its model."""
    with powered_stack(redis_url, {"watt": STREAM_WATTS, "dark": None}) as (gateway, _):
        for _ in range(4):
            assert chat(gateway.url).status == 200
        assert eventually(lambda: attributed_answers(scrape(gateway)) == 2, timeout=15)
        text = scrape(gateway)
        assert total(text, "llmgw_model_answers_total", model="dark-model", host="dark") == 2
        dark = [
            line for line in text.splitlines()
            if 'host="dark"' in line and ("energy" in line or "power_watts" in line)
        ]  # fmt: skip
        assert dark == []
        assert total(text, "llmgw_host_power_watts", host="watt") > 0


def test_two_replicas_on_one_host_share_its_energy_without_counting_it_twice(
    redis_url: str,
) -> None:
    """Two gateways stream on one host at once: each takes the part of the host's energy its
    own streams are of both replicas' (the host's leases in Redis), so together they account
    for what the host measured, not twice it."""
    rounds = 4
    with powered_replicas(redis_url, {"box": STREAM_WATTS}, 2) as (gateways, sims):
        before = sims["box"].stats()["energy_joules"]

        def one_after_another(url: str) -> None:
            for _ in range(rounds):
                assert chat(url).status == 200

        threads = [
            threading.Thread(target=one_after_another, args=(gateway.url,))
            for gateway in gateways
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        measured = sims["box"].stats()["energy_joules"] - before

        def settled() -> bool:
            counts = [attributed_answers(scrape(gateway)) for gateway in gateways]
            return counts == [2 * rounds, 2 * rounds]

        assert eventually(settled, timeout=20)
        attributed = sum(
            total(scrape(gateway), "llmgw_energy_attributed_joules_total", host="box")
            for gateway in gateways
        )
    assert attributed == pytest.approx(measured, rel=0.1)
