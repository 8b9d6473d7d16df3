"""Shared fixtures: a real redis-server per session, and a clean database for every test."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import redis
from support import free_port, start_redis

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a real Redis: REDIS_URL when given, else a private redis-server on a free port."""
    if url := os.environ.get("REDIS_URL"):
        yield _database_of_this_worker(url)
        return
    with _private_redis() as url:
        yield url


def _database_of_this_worker(url: str) -> str:
    """REDIS_URL itself, or under pytest-xdist a database of each worker's own (gw3 uses 3)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    return urlsplit(url)._replace(path=f"/{int(worker[2:]) % 16}").geturl()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The Redis URL, with the database emptied so each test starts from a clean slate."""
    with redis.Redis.from_url(redis_server) as client:
        client.flushdb()
    return redis_server


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client for looking at what the gateway wrote."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def lone_redis_url() -> Iterator[str]:
    """A redis-server only this test talks to, for tests that count its commands: commandstats
    are the server's, so another test's gateway winding down on the shared one would count too."""
    with _private_redis() as url:
        yield url


@contextmanager
def _private_redis() -> Iterator[str]:
    """The URL of a redis-server of our own on a free port, stopped at the end."""
    process = start_redis(port := free_port(), "--bind", "127.0.0.1")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def lone_redis_client(lone_redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client of the test's lone redis-server."""
    with redis.Redis.from_url(lone_redis_url) as client:
        yield client
