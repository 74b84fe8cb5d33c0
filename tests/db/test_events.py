"""worker.events: stored, published on both channels, kept as capped history; schema-valid."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from worker import db, events
from worker.queueing import validator


@pytest.fixture
def database(database_url: str):
    conn = db.init_db(database_url)
    yield conn
    conn.close()


def _subscribe(redis_conn, *channels: str):
    pubsub = redis_conn.pubsub()
    pubsub.subscribe(*channels)
    for _ in channels:  # the confirmations: from here on every publish reaches us
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    return pubsub


def _next(pubsub, timeout: float = 5.0) -> tuple[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=deadline - time.monotonic())
        if msg is not None:
            return msg["channel"].decode(), json.loads(msg["data"])
    raise AssertionError("no message within timeout")


def test_publish_stores_publishes_and_keeps_history(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100", intent="x")
    pubsub = _subscribe(redis_conn, events.CHANNEL_ALL, events.channel_for(call.id))
    try:
        ev = events.publish(redis_conn, call.id, "hold.started", {"after_s": 4.5})
        got = {}
        while len(got) < 2:      # Pub/Sub ignores the db number: skip other test runs' events
            channel, message = _next(pubsub)
            if message["call_id"] == call.id:
                got[channel] = message
    finally:
        pubsub.close()
    assert got == {events.CHANNEL_ALL: ev, events.channel_for(call.id): ev}
    assert ev["type"] == "hold.started" and ev["call_id"] == call.id and ev["data"] == {"after_s": 4.5}
    validator("event").validate(ev)
    rows = list(db.CallEvent.select().where(db.CallEvent.call == call.id))
    assert [r.to_dict() for r in rows] == [ev]
    assert events.history(redis_conn, call.id) == [ev]
    assert 0 < redis_conn.ttl(events.history_key(call.id)) <= events.HISTORY_TTL_S


def test_history_falls_back_to_database(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    first = events.publish(redis_conn, call.id, "call.queued", {"number": call.number})
    second = events.publish(redis_conn, call.id, "call.ended", {"status": "canceled", "reason": "test"})
    redis_conn.delete(events.history_key(call.id))
    assert events.history(redis_conn, call.id) == [first, second]
    assert events.history(None, call.id) == [first, second]
    for ev in (first, second):
        validator("event").validate(ev)


def test_history_is_capped(database, redis_conn, monkeypatch) -> None:
    monkeypatch.setattr(events, "HISTORY_MAX", 5)
    call = db.Call.create(number="+15550100100")
    for i in range(8):
        events.publish(redis_conn, call.id, "detector.state", {"i": i}, store=False)
    assert [e["data"]["i"] for e in events.history(redis_conn, call.id)] == [3, 4, 5, 6, 7]


def test_event_for_unknown_call_is_published_not_stored(database, redis_conn) -> None:
    ev = events.publish(redis_conn, "f" * 32, "call.dialing", {})
    assert db.CallEvent.select().count() == 0
    assert events.history(redis_conn, "f" * 32) == [ev]


@pytest.mark.parametrize(
    ("call_id", "type_", "data"),
    [("", "call.queued", {}), ("c1", "Queued", {}), ("c1", "call", {}), ("c1", "call.queued", [1])],
)
def test_malformed_events_are_refused(call_id: str, type_: str, data: object) -> None:
    with pytest.raises(ValueError):
        events.make_event(call_id, type_, data)  # type: ignore[arg-type]


def test_schema_rejects_bad_events() -> None:
    v = validator("event")
    good = events.make_event("c1", "call.ended", {"status": "busy", "reason": "USER_BUSY"}, ts=1.0)
    v.validate(good)
    for bad in (
        {**good, "extra": 1},
        {**good, "ts": "yesterday"},
        {**good, "data": {"status": "busy"}},            # call.ended needs a reason
        {k: good[k] for k in ("type", "call_id", "ts")},
    ):
        with pytest.raises(jsonschema.ValidationError):
            v.validate(bad)
