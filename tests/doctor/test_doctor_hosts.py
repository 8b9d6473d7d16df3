"""`llmgw doctor` with several model hosts and the hosted fallback (issue 15): each home host
walked on its own and labelled with its configured name, one host down named while the other is
said to be fine, the fallback checked as a hosted provider (reachable, key accepted, model
listed; no nginx, no generation), advice naming each host's own variables, and no key printed.
Real sims (one killed), real probes, real Redis; every doctor runs at once."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest
import redis
from doctor_process import Run, Scene, doctors
from probe_process import running_probe
from sim_process import SimHandle, running_sims
from support import eventually, flushed, free_port

from app.doctor.run import HOPS

if TYPE_CHECKING:
    from collections.abc import Iterator

MODEL = "nvidia/nemotron-3-nano"
FALLBACK_KEY = f"sk-{secrets.token_hex(24)}"
LMSTUDIO_KEY = f"sk-lm-{secrets.token_hex(8)}:{secrets.token_hex(16)}"
WRONG_KEY = secrets.token_hex(32)
KEYS = (FALLBACK_KEY, LMSTUDIO_KEY, WRONG_KEY)  # never printed
SIMS = {
    "mac1": ("--decode-rate", "100"),
    "linux1": (),  # killed before the doctors run: the host that is down
    "mac2": ("--decode-rate", "100"),
    "hosted": ("--api-key", FALLBACK_KEY),  # the hosted fallback
    "locked": ("--api-key", LMSTUDIO_KEY),  # LM Studio with Require Authentication on
}
HOST_HOPS = [hop for hop in HOPS if hop not in ("redis", "admit-script", "tls")]
QUICK = ("--no-concurrency",)


def fallback(model: str = MODEL, key: str = FALLBACK_KEY, url: str = "") -> dict[str, str]:
    return {"fallback_url": url, "fallback_token": key, "fallback_model": model}


def runs(sims: dict[str, SimHandle], redis_url: str) -> dict[str, Run]:
    """Each case's doctor run."""
    hosted, nowhere = sims["hosted"].url, f"http://127.0.0.1:{free_port()}"
    single = {"upstream_url": sims["mac2"].url, "redis_url": redis_url}
    return {
        "one_down": Run(
            {
                "upstreams": "mac1,linux1",
                "upstream_mac1_url": sims["mac1"].url,
                "upstream_linux1_url": sims["linux1"].url,
                "redis_url": redis_url,
            },
            KEYS,
        ),
        "fallback_fine": Run(single | fallback(url=hosted), KEYS, options=QUICK),
        "fallback_refuses": Run(single | fallback(key=WRONG_KEY, url=hosted), KEYS, options=QUICK),
        "fallback_no_model": Run(single | fallback("gpt-none", url=hosted), KEYS, options=QUICK),
        "named_doors": Run(
            {
                "upstreams": "edge,studio",
                "upstream_edge_url": "https://llmgw-doctor.invalid",
                "upstream_studio_url": sims["locked"].url,
                "upstream_studio_token": WRONG_KEY,
                "redis_url": redis_url,
            }
            | fallback(url=nowhere),
            KEYS,
            options=QUICK,
        ),
        "named_probe": Run(
            {
                "upstreams": "mac2,studio",
                "upstream_mac2_url": sims["mac2"].url,
                "upstream_studio_url": sims["locked"].url,
                "upstream_studio_token": LMSTUDIO_KEY,
                "upstream_studio_probe": "mac-studio",
                "redis_url": redis_url,
            },
            KEYS,
            options=QUICK,
        ),
    }


@pytest.fixture(scope="module")
def scene(redis_server: str) -> Iterator[Scene]:
    """Five sims, linux1's killed; probes publishing as mac1 and mac2 (none as mac-studio);
    then every case's doctor at once."""
    redis_url = flushed(redis_server)
    with (
        redis.Redis.from_url(redis_url) as client,
        running_sims(**SIMS) as sims,
        running_probe(redis_url, sims["mac1"].url, probe_host="mac1"),
        running_probe(redis_url, sims["mac2"].url, probe_host="mac2"),
    ):
        probes = ("{llmgw}:probe:mac1", "{llmgw}:probe:mac2")
        assert eventually(lambda: client.exists(*probes) == len(probes), timeout=15)
        sims["linux1"].kill()
        yield Scene(doctors(runs(sims, redis_url)), sims)


def test_one_host_down_is_named_and_the_other_is_said_to_be_fine(scene: Scene) -> None:
    """mac1 up, linux1 killed: every hop runs for each host, labelled with its name; linux1
    fails at its tunnel (the rest of its walk skipped), every mac1 hop passes, the verdict
    says both, and the exit code is a failure's."""
    diagnosis = scene["one_down"]
    assert diagnosis.code == 1, diagnosis.output
    assert list(diagnosis.rows) == [
        "config",
        "redis",
        "admit-script",
        *(f"mac1 {hop}" for hop in HOST_HOPS),
        *(f"linux1 {hop}" for hop in HOST_HOPS),
    ]
    assert {diagnosis.rows[f"mac1 {hop}"].result for hop in HOST_HOPS} == {"ok"}
    assert "in parallel" in diagnosis.rows["mac1 concurrency"].detail
    assert "fresh: mac1" in diagnosis.rows["mac1 probe"].detail
    down = diagnosis.rows["linux1 tunnel"]
    assert (down.result, down.detail.endswith("(Connection refused)")) == ("FAIL", True)
    assert "tailscale funnel status" in down.advice
    after = HOST_HOPS[HOST_HOPS.index("tunnel") + 1 :]
    assert {diagnosis.rows[f"linux1 {hop}"].result for hop in after} == {"skipped"}
    assert "FAIL at linux1 tunnel: fix that hop first" in diagnosis.output
    assert f"mac1: all {len(HOST_HOPS)} hops passed." in diagnosis.output
    assert "mac1: model nvidia/nemotron-3-nano, upstream http://127.0.0.1:" in (
        diagnosis.rows["config"].detail
    )


def test_the_fallback_is_checked_as_a_hosted_provider(scene: Scene) -> None:
    """One host and the fallback: the home hops stay unlabelled as before; the fallback is
    reached, its key accepted and its model listed, with no nginx, generation or probe hop and
    no answer asked of it (its tokens cost money)."""
    diagnosis = scene["fallback_fine"]
    assert diagnosis.code == 0, diagnosis.output
    fallback_hops = ["fallback dns", "fallback tunnel", "fallback token", "fallback model"]
    assert list(diagnosis.rows) == ["config", *(h for h in HOPS if h != "tls"), *fallback_hops]
    assert diagnosis.rows["fallback token"].detail == "accepted (200)"
    assert diagnosis.rows["fallback model"].detail.startswith(f"{MODEL} is listed")
    assert "; fallback: model nvidia/nemotron-3-nano, upstream" in diagnosis.rows["config"].detail
    assert scene.sims["hosted"].stats()["started"] == 0


def test_a_refused_fallback_key_fails_the_fallback_alone(scene: Scene) -> None:
    """A wrong LLMGW_FALLBACK_TOKEN fails the fallback's token hop and says to set it; the
    home host still passes, the exit code is a failure's, and the key is never printed."""
    diagnosis = scene["fallback_refuses"]
    assert diagnosis.code == 1, diagnosis.output
    row = diagnosis.rows["fallback token"]
    assert (row.result, row.detail) == ("FAIL", "the provider refused LLMGW_FALLBACK_TOKEN (401)")
    assert "an API key the provider gave" in row.advice
    assert "tokens.map" not in row.advice
    assert diagnosis.rows["fallback model"].result == "skipped"
    assert {diagnosis.rows[hop].result for hop in HOPS if hop != "tls"} <= {"ok", "skipped"}
    assert "FAIL at fallback token: fix that hop first" in diagnosis.output


def test_a_fallback_model_the_provider_lacks_names_what_it_has(scene: Scene) -> None:
    """LLMGW_FALLBACK_MODEL not among the provider's models: its model hop fails and lists
    what the provider has."""
    diagnosis = scene["fallback_no_model"]
    assert (diagnosis.code, diagnosis.first_failure()) == (1, "fallback model"), diagnosis.output
    row = diagnosis.rows["fallback model"]
    assert (
        row.detail
        == "gpt-none (LLMGW_FALLBACK_MODEL) is not among the provider's models (1 listed)"
    )
    assert row.advice == f"set LLMGW_FALLBACK_MODEL to one of: {MODEL}"


def test_each_hosts_advice_names_its_own_variables(scene: Scene) -> None:
    """A named host's failures name its own variables (LLMGW_UPSTREAM_EDGE_URL,
    LLMGW_UPSTREAM_STUDIO_TOKEN), a fallback that does not answer is told apart from a home
    tunnel, and the verdict lists every host that failed."""
    diagnosis = scene["named_doors"]
    assert diagnosis.code == 1, diagnosis.output
    assert "LLMGW_UPSTREAM_EDGE_URL" in diagnosis.rows["edge dns"].advice
    token = diagnosis.rows["studio token"]
    assert token.detail.startswith(
        "door gateway → LM Studio: the model server refused LLMGW_UPSTREAM_STUDIO_TOKEN (401)"
    )
    assert "set LLMGW_UPSTREAM_STUDIO_TOKEN to one of LM Studio's API tokens" in token.advice
    unreachable = diagnosis.rows["fallback tunnel"]
    assert unreachable.result == "FAIL"
    assert "LLMGW_FALLBACK_URL" in unreachable.advice
    assert "tailscale" not in unreachable.advice
    for hop in ("edge dns", "studio token", "fallback tunnel"):
        assert f"FAIL at {hop}: fix that hop first" in diagnosis.output


def test_a_named_hosts_probe_is_looked_for_under_its_probe_name(scene: Scene) -> None:
    """Each named host's probe hop reads its own snapshot: mac2's is fresh, studio's
    (LLMGW_UPSTREAM_STUDIO_PROBE=mac-studio) is missing and the advice says which name to
    publish under; the host's token passes and is never printed."""
    diagnosis = scene["named_probe"]
    assert diagnosis.rows["mac2 probe"].detail.startswith("fresh: mac2 ")
    assert diagnosis.rows["studio token"].result == "ok", diagnosis.output
    row = diagnosis.rows["studio probe"]
    assert (row.result, row.detail) == (
        "FAIL",
        "no probe snapshot in Redis ({llmgw}:probe:mac-studio)",
    )
    assert "LLMGW_PROBE_HOST=mac-studio" in row.advice
    assert "FAIL at studio probe: fix that hop first" in diagnosis.output
    assert "mac2: all 8 hops passed, 1 left out." in diagnosis.output
