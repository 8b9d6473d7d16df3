"""`llmgw keys create|list|revoke`: the API keys of the owner's tools, in the gateway's Redis.

Exit codes: 0 done, 1 no such key or the name is taken, 2 misconfigured or misused."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.access.keys import KEYED_LANES, KeyLimits, Lane, valid_name
from app.access.store import DuplicateName, KeyStore
from app.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from app.access.keys import ApiKey
    from app.settings import Settings

MAX_LIMIT = 1_000_000_000


def main(argv: list[str] | None = None) -> int:
    """Entry point of `llmgw keys`."""
    args = _parser().parse_args(argv)
    settings = _settings()
    if settings is None:
        return 2
    try:
        return asyncio.run(_run(args, settings))
    except (RedisError, OSError) as exc:  # the URL may carry a password: only the error's kind
        return _fail(f"cannot reach Redis at LLMGW_REDIS_URL ({type(exc).__name__})", 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgw keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it, this once")
    create.add_argument("--name", required=True, type=_name, help="1-32 of a-z 0-9 _ . -")
    create.add_argument("--lane", required=True, choices=[lane.value for lane in KEYED_LANES])
    for limit, unit in (("requests", "per window"), ("tokens", "per window"), ("concurrency", "")):
        create.add_argument(
            f"--{limit}", type=_count, default=0, help=f"{limit} {unit} (0: none)".strip()
        )
    commands.add_parser("list", help="every key's name, lane, limits and date (never the key)")
    revoke = commands.add_parser("revoke", help="refuse the key of that name from now on")
    revoke.add_argument("name", type=_name)
    return parser


def _name(text: str) -> str:
    if not valid_name(text):
        raise argparse.ArgumentTypeError("a name is 1 to 32 characters of a-z, 0-9, _ . -")
    return text


def _count(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"a whole number from 0 to {MAX_LIMIT}")
    return int(text)


def _settings() -> Settings | None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(str(exc), 2)
        return None
    if settings.key_secret is None:
        _fail(
            "LLMGW_KEY_SECRET is not set: the gateways' own, at least 32 characters "
            "(make one with `openssl rand -hex 32`)",
            2,
        )
        return None
    if settings.redis_url is None:
        _fail("LLMGW_REDIS_URL is not set: keys live in the Redis the gateways share", 2)
        return None
    return settings


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    assert settings.redis_url is not None  # noqa: S101 - checked in _settings
    assert settings.key_secret is not None  # noqa: S101
    url = settings.redis_url.get_secret_value()
    async with aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=3) as redis:
        secret = settings.key_secret.get_secret_value().encode()
        store = KeyStore(redis, prefix=settings.key_prefix, secret=secret)
        if args.command == "create":
            return await _create(store, args, settings.window_seconds)
        if args.command == "list":
            return _print_list(await store.list(), settings.window_seconds)
        if not await store.revoke(args.name):
            return _fail(f"no key is named {args.name!r}", 1)
        print(f"revoked {args.name!r}: every gateway refuses it within a second")
        return 0


async def _create(store: KeyStore, args: argparse.Namespace, window: int) -> int:
    limits = KeyLimits(args.requests, args.tokens, args.concurrency)
    try:
        key = await store.create(args.name, Lane(args.lane), limits)
    except DuplicateName:
        return _fail(f"a key named {args.name!r} exists already (revoke it first)", 1)
    print(f"created {args.name!r}, lane {args.lane}: {_limits(limits, window)}")
    print("the key is shown only now; keep it like a password:")
    print(key)
    return 0


def _print_list(records: list[ApiKey], window: int) -> int:
    if not records:
        print("no keys (llmgw keys create --name NAME --lane owner|member)")
        return 0
    print(f"limits per {window} s window (LLMGW_WINDOW_SECONDS), concurrency at once; - is none")
    rows: list[tuple[str, ...]] = [("NAME", "LANE", "REQUESTS", "TOKENS", "CONCURRENCY", "CREATED")]
    for record in records:
        limits = record.limits
        numbers = (limits.requests, limits.tokens, limits.concurrency)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        rows.append((record.name, record.lane, *(str(n) if n else "-" for n in numbers), created))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _limits(limits: KeyLimits, window: int) -> str:
    requests = f"{limits.requests} requests" if limits.requests else "requests unlimited"
    tokens = f"{limits.tokens} tokens" if limits.tokens else "tokens unlimited"
    streams = f"{limits.concurrency} at once" if limits.concurrency else "no cap at once"
    return f"{requests} and {tokens} per {window} s window, {streams}"


def _fail(message: str, code: int) -> int:
    print(f"llmgw keys: {message}", file=sys.stderr)
    return code
