"""Secrets kept out of the doctor's output: URLs redacted, the finished report scrubbed."""

from __future__ import annotations

import contextlib
import os
import re
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with its password (and a token-like user name) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = (f"{parts.username}:***@" if parts.password is not None else "***@") + host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc))


# Every host's token and URL (LLMGW_UPSTREAM_TOKEN, LLMGW_UPSTREAM_MAC1_TOKEN, the fallback's),
# read by name pattern so that a host of LLMGW_UPSTREAMS is covered without its settings.
SECRET_NAMES = re.compile(r"^LLMGW_(UPSTREAM(_[A-Z0-9_]+)?_TOKEN|FALLBACK_TOKEN|VISITOR_HASH_KEY)$")
URL_NAMES = re.compile(r"^LLMGW_(REDIS_URL|UPSTREAM(_[A-Z0-9_]+)?_URL|FALLBACK_URL)$")


def secrets_in(environ: dict[str, str]) -> list[str]:
    """The values that must never be printed, read from the environment as the settings are."""
    found = [value for name, value in environ.items() if SECRET_NAMES.match(name)]
    for name, value in environ.items():
        if URL_NAMES.match(name):
            # A malformed URL raises here; the config hop reports it without printing it.
            with contextlib.suppress(ValueError):
                found.append(urlsplit(value).password or "")
    return [value for value in found if value]


def scrub(text: str, secrets: list[str]) -> str:
    """Defence in depth: the hops never print a secret, and this removes any that slipped in."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def reason(exc: BaseException) -> str:
    """A short cause: "Connection refused" rather than asyncio's "Connect call failed (...)"."""
    if isinstance(exc, OSError) and exc.errno:  # negative: a resolver (getaddrinfo) error
        return os.strerror(exc.errno) if exc.errno > 0 else str(exc.strerror)
    return str(exc).strip() or type(exc).__name__
