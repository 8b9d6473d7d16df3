"""`llmgw keys` as a process against a real Redis: the key shown once, only its HMAC stored,
names unique, and exit codes a script can rely on (0 done, 1 not found or taken, 2 misuse)."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import pytest
from keys_support import KEY_SECRET, create_key, keys_command
from support import free_port

from app.access.keys import well_formed

if TYPE_CHECKING:
    import redis


def stored_bytes(client: redis.Redis) -> bytes:
    """Every key name, field and value in Redis, run together."""
    chunks: list[bytes] = []
    for name in client.keys("*"):
        chunks.append(as_bytes(name))
        for field, value in client.hgetall(name).items():
            chunks += [as_bytes(field), as_bytes(value)]
    return b"\n".join(chunks)


def as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def list_rows(redis_url: str) -> list[list[str]]:
    """The rows of `llmgw keys list`, split into cells, without its note and header."""
    done = keys_command("list", redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    return [line.split() for line in done.stdout.splitlines()[2:]]


def test_create_prints_the_key_once_alone_on_its_last_line(redis_url: str) -> None:
    """The key is the whole last line, appears nowhere else, and two keys differ."""
    done = keys_command("create", "--name", "laptop", "--lane", "owner", redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    key = done.stdout.splitlines()[-1]
    assert well_formed(key)
    assert done.stdout.count(key) == 1
    assert key not in done.stderr
    assert create_key(redis_url, "editor") != key


def test_redis_holds_only_the_keys_hmac(redis_url: str, redis_client: redis.Redis) -> None:
    """Redis has HMAC-SHA256(LLMGW_KEY_SECRET, key) with the name and lane, never the key."""
    key = create_key(redis_url, "scripts", "--requests", "50", lane="member")
    stored = stored_bytes(redis_client)
    digest = hmac.new(KEY_SECRET.encode(), key.encode(), hashlib.sha256).hexdigest()
    assert key.encode() not in stored
    assert key.removeprefix("llmgw-").encode() not in stored
    assert KEY_SECRET.encode() not in stored
    assert digest.encode() in stored
    assert b'"scripts"' in stored
    assert b'"member"' in stored


def test_list_shows_name_lane_limits_and_date_but_never_the_key(redis_url: str) -> None:
    """Each key's name, lane, limits (- for none) and creation date, sorted by name."""
    keys = [
        create_key(redis_url, "webui", "--requests", "100", "--tokens", "50000", lane="member"),
        create_key(redis_url, "editor", "--concurrency", "2"),
    ]
    done = keys_command("list", redis_url=redis_url)
    assert not any(key in done.stdout for key in keys)
    assert "60 s window" in done.stdout  # LLMGW_WINDOW_SECONDS' default
    rows = list_rows(redis_url)
    assert [row[:5] for row in rows] == [
        ["editor", "owner", "-", "-", "2"],
        ["webui", "member", "100", "50000", "-"],
    ]
    assert all(row[5].endswith("Z") and row[5][:2] == "20" for row in rows)


def test_no_keys_is_said_plainly(redis_url: str) -> None:
    """An empty list says there are none, and how to make one."""
    done = keys_command("list", redis_url=redis_url)
    assert (done.returncode, done.stdout.split()[:2]) == (0, ["no", "keys"])


def test_revoke_removes_the_key_and_a_second_revoke_finds_none(redis_url: str) -> None:
    """Revoke exits 0 and the key leaves the list; revoking it again exits 1."""
    create_key(redis_url, "old-tool")
    create_key(redis_url, "new-tool")
    assert keys_command("revoke", "old-tool", redis_url=redis_url).returncode == 0
    assert [row[0] for row in list_rows(redis_url)] == ["new-tool"]
    again = keys_command("revoke", "old-tool", redis_url=redis_url)
    assert again.returncode == 1
    assert "old-tool" in again.stderr


def test_a_taken_name_exits_1_and_keeps_the_first_key(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A second create with the same name fails, prints no key and leaves the first in place."""
    create_key(redis_url, "laptop", "--requests", "7")
    done = keys_command("create", "--name", "laptop", "--lane", "member", redis_url=redis_url)
    assert done.returncode == 1
    assert "exists" in done.stderr
    assert not any(well_formed(line) for line in done.stdout.splitlines())
    assert [row[:3] for row in list_rows(redis_url)] == [["laptop", "owner", "7"]]
    assert redis_client.hlen("{llmgw}:api-keys") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["create", "--name", "Laptop", "--lane", "owner"],
        ["create", "--name", "a" * 33, "--lane", "owner"],
        ["create", "--name", "", "--lane", "owner"],
        ["create", "--name", "my tool", "--lane", "owner"],
        ["create", "--name", "ok", "--lane", "public"],
        ["create", "--name", "ok", "--lane", "owner", "--requests", "-1"],
        ["create", "--name", "ok", "--lane", "owner", "--tokens", "lots"],
        ["create", "--lane", "owner"],
        ["revoke"],
        ["rotate", "ok"],
        [],
    ],
)
def test_misuse_exits_2_and_writes_nothing(
    redis_url: str, redis_client: redis.Redis, args: list[str]
) -> None:
    """Bad names (1-32 of a-z 0-9 _ . -), lanes, limits or commands: usage, exit 2, no key."""
    done = keys_command(*args, redis_url=redis_url)
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert redis_client.keys("*") == []


def test_names_of_32_allowed_characters_are_accepted(redis_url: str) -> None:
    """The longest name, with every kind of allowed character."""
    name = "a-b_c.9" + "z" * 25
    create_key(redis_url, name)
    assert list_rows(redis_url)[0][0] == name


@pytest.mark.parametrize(
    ("secret", "with_redis", "says"),
    [
        (None, True, "LLMGW_KEY_SECRET is not set"),
        ("too-short", True, "LLMGW_KEY_SECRET: Value error, must be at least 32 characters"),
        (KEY_SECRET, False, "LLMGW_REDIS_URL is not set"),
    ],
)
def test_misconfiguration_exits_2_naming_the_variable(
    redis_url: str, secret: str | None, with_redis: bool, says: str
) -> None:
    """No secret, a short one, or no shared Redis: a clear message, exit 2, nothing else."""
    done = keys_command("list", redis_url=redis_url if with_redis else None, secret=secret)
    assert (done.returncode, done.stdout) == (2, "")
    assert says in done.stderr
    assert "too-short" not in done.stderr


def test_unreachable_redis_exits_2_without_showing_its_url() -> None:
    """A Redis that refuses: exit 2, and the URL (its password) is not printed."""
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    done = keys_command("create", "--name", "laptop", "--lane", "owner", redis_url=url)
    assert (done.returncode, done.stdout) == (2, "")
    assert "cannot reach Redis" in done.stderr
    assert "hunter2" not in done.stderr
