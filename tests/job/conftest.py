"""tests/job use their own Redis database (11): other suites flush db 9 while they run.

Several test sessions may share the server at once, so nothing here flushes: every test
uses names of its own (queue names, worker ids) and deletes what it created.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis

JOB_DB = 11


def with_db(url: str, number: int) -> str:
    """The same Redis server, another database (redis://h:p/N or unix://path?db=N)."""
    if url.startswith("unix://"):
        if "db=" in url:
            return re.sub(r"db=\d+", f"db={number}", url)
        return f"{url}{'&' if '?' in url else '?'}db={number}"
    return re.sub(r"(redis://[^/]+)(/\d*)?$", rf"\g<1>/{number}", url)


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(with_db(redis_url, JOB_DB))
    yield conn
    conn.close()


@pytest.fixture
def uniq() -> str:
    """A prefix for Redis names owned by this test alone."""
    return f"t{uuid.uuid4().hex[:10]}"
