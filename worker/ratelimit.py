"""A sliding-window rate limiter on Redis (call launches per API key).

    if not allow(redis_conn, "launch:" + key_id, limit=10, window_s=60): refuse
    allowed, retry_after_s = check(redis_conn, "launch:" + key_id, 10, 60)

Each key is a sorted set of hit timestamps (the Redis server's clock, so every
web process agrees) trimmed to the window; one Lua script does trim, count and
add atomically, so concurrent launches can never exceed the limit.  Refused
attempts are not counted.  Pass a key id (a hash), never the API key itself.
"""

from __future__ import annotations

import math

import redis

KEY_PREFIX = "hs:rate:"

# Milliseconds throughout: Lua numbers reach Redis as "%.14g" strings, exact up to 14 digits.
_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, t[1] .. '.' .. t[2] .. '-' .. count)
  redis.call('PEXPIRE', key, window_ms)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window_ms - now}
"""


def check(redis_conn: redis.Redis, key: str, limit: int, window_s: float) -> tuple[bool, int]:
    """(allowed, retry_after_s): at most `limit` hits per sliding `window_s` seconds for `key`."""
    if limit < 0 or window_s <= 0:
        raise ValueError(f"limit must be >= 0 and window_s > 0, got {limit} and {window_s}")
    if limit == 0:
        return False, math.ceil(window_s)
    script = redis_conn.register_script(_SCRIPT)
    allowed, retry_ms = script(keys=[KEY_PREFIX + key], args=[int(limit), max(1, int(window_s * 1000))])
    if int(allowed):
        return True, 0
    return False, max(1, math.ceil(int(retry_ms) / 1000))


def allow(redis_conn: redis.Redis, key: str, limit: int, window_s: float) -> bool:
    """True (and counted) when one more hit fits in the window."""
    return check(redis_conn, key, limit, window_s)[0]
