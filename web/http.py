"""Small request helpers shared by the blueprints: the JSON body, the app's Redis, launching a call."""

from __future__ import annotations

import json
from typing import Any

import redis
from flask import current_app, g, request

from web.errors import InvalidJson
from worker import db, queueing, ratelimit
from worker.config import Settings
from worker.errors import RateLimited

RATE_WINDOW_S = 60          # Settings.launch_rate_per_minute is per this many seconds


def settings() -> Settings:
    return current_app.extensions["hs.settings"]


def redis_conn() -> redis.Redis:
    return current_app.extensions["hs.redis"]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or InvalidJson (400) saying what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidJson("the request body must be a JSON object; it is empty")
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidJson(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def call_links(call_id: str) -> dict[str, str]:
    return {
        "self": f"/api/calls/{call_id}",
        "events": f"/api/calls/{call_id}/events",
        "hangup": f"/api/calls/{call_id}/hangup",
        "dtmf": f"/api/calls/{call_id}/dtmf",
        "page": f"/calls/{call_id}",
        "ws": f"/ws/events?call_id={call_id}",
    }


def launch_call(body: Any, source: str) -> db.Call:
    """Validate, rate-limit (per key), store, publish and enqueue.  Nothing is created on any error."""
    validated = queueing.validate_request(body, settings())
    limit = settings().launch_rate_per_minute
    allowed, retry_after = ratelimit.check(redis_conn(), f"launch:{g.key_id}", limit, RATE_WINDOW_S)
    if not allowed:
        exc = RateLimited(f"at most {limit} call launches per minute; retry in {retry_after} s")
        exc.retry_after = retry_after  # type: ignore[attr-defined]
        raise exc
    call, _job = queueing.launch_validated(redis_conn(), validated, settings(), source=source)
    return call
