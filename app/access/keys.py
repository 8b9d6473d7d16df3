"""An API key's shape, its name, lane and limits, and the HMAC that Redis keeps instead of it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import StrEnum

import msgspec

KEY_PREFIX = "llmgw-"
# The prefix, then 32 random bytes in URL-safe base64 (43 characters): what `new_key` makes.
KEY_PATTERN = re.compile(r"llmgw-[A-Za-z0-9_-]{43}")
NAME_PATTERN = re.compile(r"[a-z0-9_.-]{1,32}")


class Lane(StrEnum):
    """Whose request it is, highest priority first: the owner's keys, members' keys, and the
    public (/api/chat visitors, who have no key)."""

    OWNER = "owner"
    MEMBER = "member"
    PUBLIC = "public"


# The lanes a key may be created in: the public lane is the one without a key.
KEYED_LANES = (Lane.OWNER, Lane.MEMBER)


class KeyLimits(msgspec.Struct, frozen=True):
    """A key's own limits: requests and tokens per window (LLMGW_WINDOW_SECONDS), streams at
    once; 0 is no limit."""

    requests: int = 0
    tokens: int = 0
    concurrency: int = 0


class ApiKey(msgspec.Struct, frozen=True):
    """What a key stands for, as Redis keeps it: never the key itself."""

    name: str
    lane: Lane
    limits: KeyLimits
    created: int  # Unix seconds


def new_key() -> str:
    """A fresh key, shown once to whoever creates it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def well_formed(text: str) -> bool:
    """Whether `text` has the shape of a key: anything else is refused before Redis is asked."""
    return KEY_PATTERN.fullmatch(text) is not None


def valid_name(name: str) -> bool:
    """1 to 32 characters of a-z, 0-9, `_`, `.` and `-`: safe in a metric label or a log line."""
    return NAME_PATTERN.fullmatch(name) is not None


def key_digest(secret: bytes, key: str) -> str:
    """HMAC-SHA256 of the key under LLMGW_KEY_SECRET, in hex: what Redis stores and looks up."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()
