"""Scale-out fixtures: the real Redis (127.0.0.1:6379) under a key prefix of its own per
test, and scratch Postgres databases."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from scratch_db import scratch_postgres

REDIS_URL = os.environ.get("WAYPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    name = f"wptest:{os.urandom(4).hex()}:"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A scratch database of this test's own, dropped afterwards."""
    with scratch_postgres() as url:
        yield url
