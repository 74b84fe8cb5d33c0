"""Call events: every step of a call is stored, published and kept as history.

    publish(redis_conn, call_id, "hold.started", {"after_s": 42.0})

does three things, in this order:

1. stores a `CallEvent` row (the durable record; skipped with a warning when the
   call row does not exist),
2. PUBLISHes the JSON event on `hs:events` (everything) and `hs:events:<call_id>`,
3. RPUSHes it to `hs:history:<call_id>` (capped at HISTORY_MAX, expires after
   HISTORY_TTL_S) so late subscribers (the call page) can catch up.

A Redis outage never fails the caller: the row is stored and the event is still
returned; `history()` falls back to the database.  The event shape is
`{"type", "call_id", "ts", "data"}` (schemas/event.json).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import peewee as pw
import redis

from worker import db

log = logging.getLogger(__name__)

CHANNEL_ALL = "hs:events"
HISTORY_MAX = 2000                    # events kept per call in Redis
HISTORY_TTL_S = 7 * 24 * 3600         # seconds a call's Redis history lives after its last event
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")


def channel_for(call_id: str) -> str:
    return f"{CHANNEL_ALL}:{call_id}"


def history_key(call_id: str) -> str:
    return f"hs:history:{call_id}"


def make_event(call_id: str, type: str, data: dict[str, Any] | None = None, ts: float | None = None) -> dict:
    """The event dict (pure, apart from the default timestamp); ValueError on a malformed one."""
    if not isinstance(call_id, str) or not call_id:
        raise ValueError(f"call_id must be a non-empty string, got {call_id!r}")
    if not isinstance(type, str) or not _TYPE_RE.match(type):
        raise ValueError(f"event type must look like 'call.queued', got {type!r}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"event data must be a dict, got {data.__class__.__name__}")
    event = {"type": type, "call_id": call_id, "ts": time.time() if ts is None else float(ts), "data": data}
    json.dumps(event)  # raises TypeError now rather than in a subscriber
    return event


def publish(
    redis_conn: redis.Redis | None,
    call_id: str,
    type: str,
    data: dict[str, Any] | None = None,
    *,
    store: bool = True,
) -> dict[str, Any]:
    """Store, publish and remember one event; returns it."""
    event = make_event(call_id, type, data)
    if store:
        _store(event)
    if redis_conn is not None:
        payload = json.dumps(event, separators=(",", ":"))
        try:
            pipe = redis_conn.pipeline(transaction=False)
            pipe.rpush(history_key(call_id), payload)
            pipe.ltrim(history_key(call_id), -HISTORY_MAX, -1)
            pipe.expire(history_key(call_id), HISTORY_TTL_S)
            pipe.publish(channel_for(call_id), payload)
            pipe.publish(CHANNEL_ALL, payload)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("call %s: event %s not published (%s); stored only", call_id, type, exc)
    log.debug("call %s: event %s", call_id, type)
    return event


def _store(event: dict[str, Any]) -> None:
    try:
        with db.database.atomic():      # a savepoint: a failure here never poisons the caller's transaction
            db.CallEvent.create(
                call=event["call_id"], type=event["type"], ts=event["ts"], data=db.dumps(event["data"])
            )
    except pw.IntegrityError:
        log.warning("call %s: event %s not stored: no such call row", event["call_id"], event["type"])


def history(redis_conn: redis.Redis | None, call_id: str) -> list[dict[str, Any]]:
    """All events of a call, oldest first: the Redis list when it exists, else the stored rows."""
    if redis_conn is not None:
        try:
            raw = redis_conn.lrange(history_key(call_id), 0, -1)
        except redis.RedisError as exc:
            log.warning("call %s: history from database, Redis failed (%s)", call_id, exc)
            raw = []
        if raw:
            return [json.loads(item) for item in raw]
    ev = db.CallEvent
    rows = ev.select().where(ev.call == call_id).order_by(ev.ts, ev._meta.primary_key)
    return [row.to_dict() for row in rows]
