"""Configuration: defaults, parsing, and a start refused with the bad variable named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.settings import SettingsError, load_settings


def test_defaults_suit_a_local_lm_studio(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, the gateway points at LM Studio's default port and listens on 8000."""
    for name in ("LLMGW_UPSTREAM_URL", "LLMGW_PORT", "LLMGW_WINDOW_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.upstream_url == "http://127.0.0.1:1234"
    assert settings.port == 8000
    assert settings.window_seconds == 60


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trusted proxies are CIDRs and CORS origins URLs, both comma-separated."""
    monkeypatch.setenv("LLMGW_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8")
    monkeypatch.setenv("LLMGW_CORS_ORIGINS", "https://blog.example, https://www.blog.example")
    settings = load_settings()
    assert [str(net) for net in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::/8"]
    assert settings.cors_origins == ("https://blog.example", "https://www.blog.example")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLMGW_GLOBAL_LIMIT", "many"),
        ("LLMGW_VISITOR_LIMIT", "0"),
        ("LLMGW_PORT", "70000"),
        ("LLMGW_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("LLMGW_UPSTREAM_URL", "ftp://example"),
        ("LLMGW_IDLE_TIMEOUT", "-1"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Each invalid value is refused with a message that names its variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_serve_refuses_to_start_on_bad_config() -> None:
    """`llmgw serve` exits non-zero and says which variable is wrong, without a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env={"LLMGW_WINDOW_SECONDS": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "LLMGW_WINDOW_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_secrets_are_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token and the Redis password never show when settings are printed or logged."""
    monkeypatch.setenv("LLMGW_UPSTREAM_TOKEN", "tok-very-secret")
    monkeypatch.setenv("LLMGW_REDIS_URL", "redis://:pw-very-secret@127.0.0.1:6379/0")
    text = repr(load_settings())
    assert "very-secret" not in text


def test_an_empty_redis_url_is_unset_and_a_wrong_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LLMGW_REDIS_URL= means the embedded Redis; an address that is no Redis URL is refused."""
    monkeypatch.setenv("LLMGW_REDIS_URL", "")
    assert load_settings().redis_url is None
    monkeypatch.setenv("LLMGW_REDIS_URL", "127.0.0.1:6379")
    with pytest.raises(SettingsError, match=r"LLMGW_REDIS_URL: .*redis://"):
        load_settings()


def test_an_empty_key_secret_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """LLMGW_KEY_SECRET= (a compose file's empty default) means no keys, not a failed start."""
    monkeypatch.setenv("LLMGW_KEY_SECRET", "")
    assert load_settings().key_secret is None
    monkeypatch.setenv("LLMGW_KEY_SECRET", "short")
    with pytest.raises(SettingsError, match=r"LLMGW_KEY_SECRET: .*32 characters"):
        load_settings()


def test_one_place_in_all_holds_none_back_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """LLMGW_MAX_INFLIGHT=1 (a model server running one prediction at a time) starts with no
    place held back for the owner; asking for one there is refused, naming the variable."""
    monkeypatch.setenv("LLMGW_MAX_INFLIGHT", "1")
    assert load_settings().owner_reserved_inflight == 0
    monkeypatch.setenv("LLMGW_MAX_INFLIGHT", "4")
    assert load_settings().owner_reserved_inflight == 1
    monkeypatch.setenv("LLMGW_MAX_INFLIGHT", "1")
    monkeypatch.setenv("LLMGW_OWNER_RESERVED_INFLIGHT", "1")
    with pytest.raises(SettingsError, match="LLMGW_OWNER_RESERVED_INFLIGHT"):
        load_settings()


def test_several_hosts_come_from_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """LLMGW_UPSTREAMS names the hosts; each reads LLMGW_UPSTREAM_<NAME>_*, and what it does
    not set comes from the single host's settings (its model, its slots)."""
    monkeypatch.setenv("LLMGW_UPSTREAMS", "mac1, Linux1")
    monkeypatch.setenv("LLMGW_UPSTREAM_MAC1_URL", "https://mac.tailnet.ts.net/")
    monkeypatch.setenv("LLMGW_UPSTREAM_MAC1_TOKEN", "mac-secret")
    monkeypatch.setenv("LLMGW_UPSTREAM_MAC1_WEIGHT", "2")
    monkeypatch.setenv("LLMGW_UPSTREAM_LINUX1_URL", "http://10.0.0.7:8080")
    monkeypatch.setenv("LLMGW_UPSTREAM_LINUX1_MODEL", "qwen3-8b")
    monkeypatch.setenv("LLMGW_UPSTREAM_LINUX1_MAX_INFLIGHT", "2")
    monkeypatch.setenv("LLMGW_UPSTREAM_LINUX1_PROBE", "gpu-box")
    monkeypatch.setenv("LLMGW_MAX_INFLIGHT", "6")
    mac, linux = load_settings().hosts()
    assert (mac.name, mac.url, mac.weight, mac.max_inflight, mac.probe) == (
        "mac1",
        "https://mac.tailnet.ts.net",
        2.0,
        6,
        "mac1",
    )
    assert mac.token is not None
    assert mac.token.get_secret_value() == "mac-secret"
    assert "mac-secret" not in repr(mac)
    assert (linux.name, linux.model, linux.max_inflight, linux.probe) == (
        "linux1",
        "qwen3-8b",
        2,
        "gpu-box",
    )


def test_one_host_the_old_way_is_named_home() -> None:
    """Nothing but LLMGW_UPSTREAM_URL: one host, `home`, reading every probe."""
    (home,) = load_settings(upstream_url="http://127.0.0.1:1234").hosts()
    assert (home.name, home.probe, home.max_inflight) == ("home", None, 4)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"upstreams": "mac1"}, "LLMGW_UPSTREAM_MAC1_URL must be set"),
        ({"upstreams": "mac1", "upstream_mac1_url": "ftp://x"}, "LLMGW_UPSTREAM_MAC1_URL:"),
        (
            {"upstreams": "a", "upstream_a_url": "http://x:1", "upstream_a_max_inflight": "x"},
            "LLMGW_UPSTREAM_A_MAX_INFLIGHT:",
        ),
        (
            {"upstreams": "a", "upstream_a_url": "http://x:1", "upstream_a_weight": "0"},
            "LLMGW_UPSTREAM_A_WEIGHT:",
        ),
        ({"upstreams": "mac 1"}, "LLMGW_UPSTREAMS:"),
        ({"upstreams": "fallback"}, "LLMGW_UPSTREAMS:"),
        (
            {"upstreams": "a,a", "upstream_a_url": "http://x:1"},
            "LLMGW_UPSTREAMS: a host is named twice",
        ),
        (
            {
                "upstreams": "a",
                "upstream_a_url": "http://x:1",
                "upstream_a_max_inflight": "1",
                "owner_reserved_inflight": 1,
            },
            "LLMGW_UPSTREAM_A_MAX_INFLIGHT",
        ),
        ({"fallback_url": "https://api.example"}, "LLMGW_FALLBACK_MODEL"),
    ],
)
def test_a_bad_host_names_its_variable(overrides: dict[str, object], named: str) -> None:
    """Each host's problem names the variable to fix."""
    with pytest.raises(SettingsError, match=named):
        load_settings(**overrides)
