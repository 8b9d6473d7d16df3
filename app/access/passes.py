"""Visitor passes (issue 16): a proof of work buys an anonymous visitor a short-lived pass.

The public chat knows a visitor by address and thumbmark only, and a pool of proxies escapes
both. Work done in the visitor's browser costs a real visitor a fraction of a second and an
attacker that much per pass, and its price can follow the load: each difficulty step doubles it.

Which parts are whose:
- the `altcha` library, ALTCHA's protocol v1 (SHA-256 of a salt and a secret number, which the
  ALTCHA widget and its Web Worker solve): the challenge itself, its salt with the `?expires=`
  that ALTCHA puts there, and its HMAC (`altcha.v1.create_challenge`); and the hash and HMAC
  that verifying recomputes (`hash_hex`, `hmac_hex`).
- ours: the price (the challenge's max number, doubled per step up to a ceiling); verifying,
  because the library's `verify_solution_v1` answers only yes or no, compares with `==`, and
  hashes `str(number)` of whatever was sent (so "42" would do as 42): here the payload is decoded
  strictly, the signature compared in constant time, and a refusal says why (for the 4xx and the
  metrics); spending a challenge once in Redis; and the pass itself, below.

A pass is 45 bytes in URL-safe base64 (60 characters, no padding): version (1 byte), random id
(12), expiry in Unix seconds (4), chats allowed (2), a keyed tag of the visitor's network (10),
then HMAC-SHA256 of all that, truncated to 16 bytes (RFC 2104 section 5 allows half the hash).
The tag carries the network under the key, so a pass in a log shows no address.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import struct
import time
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from altcha.v1 import ChallengeOptions, create_challenge, hash_hex, hmac_hex

if TYPE_CHECKING:
    import redis.asyncio as aioredis

ALGORITHM: Final = "SHA-256"  # the only one issued, so the only one accepted
# The highest max number any step reaches: 5 million hashes on average, seconds of a laptop's
# workers and more of a phone's; dear for a pool of addresses, yet no lock-out for a visitor.
MAX_NUMBER_CEILING = 10_000_000
# Longer than any payload the widget sends: anything longer is refused before it is decoded.
PAYLOAD_LIMIT = 1024
PASS_SECONDS = 1800  # the issue's default: 30 minutes
PASS_CHATS = 20  # a conversation's worth; the next step makes it a setting
PASS_VERSION = 1
_PASS_BODY = struct.Struct(">B12sIH10s")
_MAC_BYTES = 16
_PASS_TEXT = re.compile(r"[A-Za-z0-9_-]{60}")  # (29 + 16) bytes in base64, a multiple of 3

Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class Refusal(StrEnum):
    """Why a solution or a pass is refused: a metric label and the 4xx's code."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    WRONG_ANSWER = "wrong_answer"
    EXPIRED = "expired"
    FOREIGN_NETWORK = "foreign_network"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal


@dataclass(frozen=True, slots=True)
class Solution:
    """A good solution. Its challenge's signature is what is spent once, until `expires` (Unix
    seconds): not the salt, since salt and number can be cut apart elsewhere and hash the same."""

    signature: str
    expires: int


@dataclass(frozen=True, slots=True)
class PassInfo:
    """A good pass: `id` (hex) keys its count of chats, at most `chats` until `expires`."""

    id: str
    expires: int
    chats: int


class _Payload(msgspec.Struct):
    """What the widget posts (base64 of this JSON); other fields, such as `took`, are ignored."""

    algorithm: str
    challenge: Hex64
    number: Annotated[int, msgspec.Meta(ge=0)]
    salt: Annotated[str, msgspec.Meta(max_length=256)]
    signature: Hex64


_decode_payload = msgspec.json.Decoder(_Payload).decode


def challenge(
    difficulty_steps: int,
    *,
    key: bytes,
    base_max_number: int,
    expires_seconds: float,
    ceiling: int = MAX_NUMBER_CEILING,
    now: float | None = None,
) -> dict[str, Any]:
    """An ALTCHA challenge (JSON for the widget) whose expected work doubles per step."""
    if difficulty_steps < 0 or base_max_number < 1:
        raise ValueError("difficulty steps must be 0 or more and the base max number positive")
    # 64 doublings pass any ceiling, and keep a runaway step count from building a huge int.
    max_number = min(base_max_number << min(difficulty_steps, 64), ceiling)
    expires = dt.datetime.fromtimestamp(_now(now) + expires_seconds, dt.UTC)
    options = ChallengeOptions(ALGORITHM, max_number, hmac_key=key, expires=expires)
    return create_challenge(options).to_dict()


def verify_solution(
    payload: str | bytes, *, key: bytes, now: float | None = None
) -> Solution | Refused:
    """Check a posted solution (base64 of JSON, or the JSON itself) without spending it."""
    submitted = _parsed(payload)
    if submitted is None or submitted.algorithm != ALGORITHM:
        return Refused(Refusal.MALFORMED)
    signature = hmac_hex(ALGORITHM, submitted.challenge.encode(), key)
    if not hmac.compare_digest(signature, submitted.signature):
        return Refused(Refusal.BAD_SIGNATURE)
    if hash_hex(ALGORITHM, f"{submitted.salt}{submitted.number}".encode()) != submitted.challenge:
        return Refused(Refusal.WRONG_ANSWER)
    expires = _salt_expiry(submitted.salt)
    if expires is None:  # signed, yet not made by challenge(): no expiry means no use here
        return Refused(Refusal.MALFORMED)
    if expires <= _now(now):
        return Refused(Refusal.EXPIRED)
    return Solution(submitted.signature, expires)


async def spend_once(
    redis: aioredis.Redis, prefix: str, solution: Solution, *, now: float | None = None
) -> bool:
    """True the first time a challenge is spent, on any replica: one SET NX, kept until the
    challenge expires (after which verify_solution refuses it anyway)."""
    milliseconds = max(1, math.ceil((solution.expires - _now(now)) * 1000))
    name = f"{{{prefix}}}:spent-challenge:{solution.signature}"
    return bool(await redis.set(name, 1, nx=True, px=milliseconds))


def issue_pass(
    network: str,
    *,
    key: bytes,
    seconds: int = PASS_SECONDS,
    chats: int = PASS_CHATS,
    now: float | None = None,
) -> str:
    """A pass for `chats` chats from `network` (see network_of) over the next `seconds`."""
    if seconds < 1 or not 0 < chats <= 0xFFFF:
        raise ValueError("a pass lasts at least a second and allows 1 to 65535 chats")
    expires = int(_now(now)) + seconds
    tag = _network_tag(key, network)
    body = _PASS_BODY.pack(PASS_VERSION, secrets.token_bytes(12), expires, chats, tag)
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode()


def read_pass(
    token: str, network: str, *, key: bytes, now: float | None = None
) -> PassInfo | Refused:
    """The pass in an X-Visitor-Pass header, if it is ours, unexpired, and from this network."""
    if not _PASS_TEXT.fullmatch(token):
        return Refused(Refusal.MALFORMED)
    raw = base64.urlsafe_b64decode(token)
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if body[0] != PASS_VERSION:
        return Refused(Refusal.MALFORMED)
    if not hmac.compare_digest(mac, _mac(key, body)):
        return Refused(Refusal.BAD_SIGNATURE)
    _, pass_id, expires, chats, tag = _PASS_BODY.unpack(body)
    if expires <= _now(now):
        return Refused(Refusal.EXPIRED)
    if not hmac.compare_digest(tag, _network_tag(key, network)):
        return Refused(Refusal.FOREIGN_NETWORK)
    return PassInfo(pass_id.hex(), expires, chats)


def network_of(address: str) -> str:
    """The network a pass is bound to: the address's /24 (IPv4) or /64 (IPv6), as text.
    Raises ValueError for text that is no address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network((ip, prefix), strict=False))


def _parsed(payload: str | bytes) -> _Payload | None:
    if len(payload) > PAYLOAD_LIMIT:
        return None
    text = payload.encode() if isinstance(payload, str) else payload
    try:
        if not text.lstrip().startswith(b"{"):
            text = base64.b64decode(text, validate=True)
        return _decode_payload(text)
    except (binascii.Error, msgspec.DecodeError):
        return None


def _salt_expiry(salt: str) -> int | None:
    """The `expires` ALTCHA writes into the salt's query: one, in whole Unix seconds."""
    values = urllib.parse.parse_qs(salt.partition("?")[2]).get("expires", [])
    if len(values) != 1 or not (values[0].isascii() and values[0].isdecimal()):
        return None
    return int(values[0])


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, hashlib.sha256)[:_MAC_BYTES]


def network_name(key: bytes, network: str) -> str:
    """A network as Redis keys name it: its keyed tag in hex, so no address is stored."""
    return _network_tag(key, network).hex()


def _network_tag(key: bytes, network: str) -> bytes:
    # The prefix keeps this HMAC's messages apart from a pass body's (which starts with byte 1).
    return hmac.digest(key, b"network:" + network.encode(), hashlib.sha256)[:10]


def _now(now: float | None) -> float:
    return time.time() if now is None else now
