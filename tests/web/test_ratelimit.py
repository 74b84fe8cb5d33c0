"""worker.ratelimit against a real Redis."""

from __future__ import annotations

import gevent
import pytest

from worker import ratelimit


def test_limit_within_window(redis_conn) -> None:
    results = [ratelimit.allow(redis_conn, "k1", 3, 60) for _ in range(5)]
    assert results == [True, True, True, False, False]
    allowed, retry = ratelimit.check(redis_conn, "k1", 3, 60)
    assert not allowed and 1 <= retry <= 60
    assert ratelimit.allow(redis_conn, "other", 3, 60)       # keys are independent
    assert 0 < redis_conn.pttl(ratelimit.KEY_PREFIX + "k1") <= 60_000


def test_concurrent_hits_never_exceed_limit(redis_conn) -> None:
    jobs = [gevent.spawn(ratelimit.allow, redis_conn, "burst", 7, 60) for _ in range(40)]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    assert sum(1 for j in jobs if j.value) == 7


def test_window_slides(redis_conn) -> None:
    # A 1 ms window: wait on Redis' own clock (not a sleep) until its millisecond has moved on
    # (the limiter counts in whole milliseconds, so a new microsecond is not enough).
    def redis_ms() -> int:
        sec, usec = redis_conn.time()
        return sec * 1000 + usec // 1000

    assert ratelimit.allow(redis_conn, "slide", 1, 0.001)
    start = redis_ms()
    while redis_ms() <= start:
        pass
    assert ratelimit.allow(redis_conn, "slide", 1, 0.001)


@pytest.mark.parametrize(("limit", "window"), [(-1, 60), (1, 0), (1, -5)])
def test_bad_arguments(redis_conn, limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        ratelimit.allow(redis_conn, "k", limit, window)


def test_zero_limit_refuses(redis_conn) -> None:
    assert ratelimit.check(redis_conn, "k", 0, 60) == (False, 60)
