"""`llmgw keys` as an operator runs it (a process of its own), and the secret the tests share
with the gateways they start."""

from __future__ import annotations

import os
import subprocess
import sys

KEY_SECRET = "made-up-secret-of-forty-characters-00000"
ENV_TIMEOUT = 30


def keys_command(
    *args: str, redis_url: str | None, secret: str | None = KEY_SECRET
) -> subprocess.CompletedProcess[str]:
    """`python -m app keys *args` with only these LLMGW_* variables (None: left unset)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LLMGW_")}
    if redis_url is not None:
        env["LLMGW_REDIS_URL"] = redis_url
    if secret is not None:
        env["LLMGW_KEY_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "app", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=ENV_TIMEOUT,
        check=False,
    )


def create_key(redis_url: str, name: str, *options: str, lane: str = "owner") -> str:
    """Create a key with the command and return it: the last line of what it printed."""
    done = keys_command("create", "--name", name, "--lane", lane, *options, redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def revoke_key(redis_url: str, name: str) -> None:
    """Revoke a key with the command."""
    done = keys_command("revoke", name, redis_url=redis_url)
    assert done.returncode == 0, done.stderr
