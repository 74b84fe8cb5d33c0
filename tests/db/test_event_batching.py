"""Buffered event rows (events.BATCHED_TYPES): they arrive, in order, and nothing is lost on flush,
call end, shutdown or a database error.  SQLite and PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worker import db, events

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def database(database_url: str):
    conn = db.init_db(database_url)
    events.flush()  # nothing buffered by an earlier test may land here
    yield conn
    events.flush()
    conn.close()


def _rows(call_id: str) -> list[tuple[str, dict]]:
    """The stored rows of a call in insertion (primary key) order."""
    q = db.CallEvent.select().where(db.CallEvent.call == call_id).order_by(db.CallEvent.id)
    return [(r.type, db.loads(r.data, {})) for r in q]


def test_buffered_rows_arrive_in_order_and_redis_history_reads_them(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    data = [{"i": i, "state": "music"} for i in range(450)]
    sent = [events.publish(redis_conn, call.id, "detector.state", d) for d in data]
    assert events.history(redis_conn, call.id) == sent  # kept in Redis (history sends what waits)
    events.flush()
    assert _rows(call.id) == [("detector.state", ev["data"]) for ev in sent]  # 3 INSERT chunks, in order
    assert events.history(None, call.id) == sent


def test_other_events_of_the_call_flush_its_rows_first(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    other = db.Call.create(number="+15550100101")
    events.publish(redis_conn, other.id, "detector.state", {"i": 99})
    for i in range(3):
        events.publish(redis_conn, call.id, "detector.state", {"i": i})
    events.publish(redis_conn, call.id, "call.ended", {"status": "no_human", "reason": "test"})
    assert _rows(call.id) == [
        ("detector.state", {"i": 0}),
        ("detector.state", {"i": 1}),
        ("detector.state", {"i": 2}),
        ("call.ended", {"status": "no_human", "reason": "test"}),
    ]
    events.flush()
    assert _rows(other.id) == [("detector.state", {"i": 99})]


def _messages(sub, count: int, deadline_s: float = 5.0) -> list[dict]:
    """The next `count` published events on `sub` (subscribe confirmations skipped), within a deadline."""
    got: list[dict] = []
    end = time.monotonic() + deadline_s
    while len(got) < count and time.monotonic() < end:
        m = sub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if m is not None:
            got.append(json.loads(m["data"]))
    return got


def test_batched_events_reach_redis_without_being_asked(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    sub = redis_conn.pubsub()
    sub.subscribe(events.channel_for(call.id))
    sent = events.publish(redis_conn, call.id, "detector.state", {"state": "speech"})
    got = _messages(sub, 1)      # the outbox's sender publishes it (no other event follows)
    sub.close()
    assert got == [sent]


def test_an_event_sent_at_once_goes_after_the_batched_ones_waiting(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    sub = redis_conn.pubsub()
    sub.subscribe(events.channel_for(call.id))
    states = [events.publish(redis_conn, call.id, "detector.state", {"i": i}) for i in range(3)]
    likely = events.publish(redis_conn, call.id, "human.likely", {"t": 1.0})
    # already in Redis, in publish order, when publish() returns: no wait for the sender
    raw = redis_conn.lrange(events.history_key(call.id), 0, -1)
    assert [json.loads(r) for r in raw] == [*states, likely]
    got = _messages(sub, 4)
    sub.close()
    assert got == [*states, likely]


def test_flush_sends_what_waits_for_redis(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    sent = events.publish(redis_conn, call.id, "detector.state", {"i": 1})
    events.flush()
    assert [json.loads(r) for r in redis_conn.lrange(events.history_key(call.id), 0, -1)] == [sent]


def test_the_writer_stores_rows_without_being_asked(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    events._writer.stored.clear()
    events.publish(redis_conn, call.id, "detector.state", {"i": 1})
    assert events._writer.stored.wait(10 * events.FLUSH_INTERVAL_S)
    assert _rows(call.id) == [("detector.state", {"i": 1})]


def test_history_from_the_database_includes_buffered_rows(database) -> None:
    call = db.Call.create(number="+15550100100")
    first = events.publish(None, call.id, "detector.state", {"i": 1})
    assert events.history(None, call.id) == [first]


def test_database_error_keeps_the_rows_until_it_is_back(database, redis_conn) -> None:
    call = db.Call.create(number="+15550100100")
    before = events.stats()
    db.database.execute_sql("ALTER TABLE callevent RENAME TO callevent_away")
    try:
        sent = [events.publish(redis_conn, call.id, "detector.state", {"i": i}) for i in range(5)]
        assert events.flush() == 0  # fails, does not raise
        after = events.stats()
        assert after["failed_flushes"] > before["failed_flushes"]
        assert after["pending"] >= 5 and after["dropped"] == before["dropped"]
        assert events.history(redis_conn, call.id) == sent  # published all the same
    finally:
        db.database.execute_sql("ALTER TABLE callevent_away RENAME TO callevent")
    events.flush()
    assert _rows(call.id) == [("detector.state", ev["data"]) for ev in sent]


def test_rows_of_an_unknown_call_are_skipped_the_others_stored(database) -> None:
    call = db.Call.create(number="+15550100100")
    events.publish(None, call.id, "detector.state", {"i": 1})
    events.publish(None, "f" * 32, "detector.state", {"i": 2})
    events.publish(None, call.id, "detector.state", {"i": 3})
    events.flush()
    assert _rows(call.id) == [("detector.state", {"i": 1}), ("detector.state", {"i": 3})]
    assert events.stats()["pending"] == 0


def test_process_exit_flushes_buffered_rows(database, database_url: str) -> None:
    call = db.Call.create(number="+15550100100")
    script = (
        "import sys; from worker import db, events\n"
        "db.init_db(sys.argv[1])\n"
        "for i in range(7): events.publish(None, sys.argv[2], 'detector.state', {'i': i})\n"
        "print(events.stats()['written'])\n"  # nothing forced: the atexit hook stores them
    )
    out = subprocess.run(
        [sys.executable, "-c", script, database_url, call.id],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "0"  # still buffered when the script ended
    assert _rows(call.id) == [("detector.state", {"i": i}) for i in range(7)]


def test_row_buffer_keeps_order_and_drops_the_oldest_past_its_cap() -> None:
    buf = events.RowBuffer(max_rows=3)
    evs = [events.make_event(cid, "detector.state", {"i": i}, ts=float(i)) for i, cid in enumerate("abab")]
    assert [buf.add(e) for e in evs] == [0, 0, 0, 1]  # the 4th pushes out the oldest (a, ts 0)
    assert len(buf) == 3 and buf.dropped == 1
    taken = buf.take("a")
    assert [e["data"]["i"] for e in taken] == [2]
    assert buf.put_back(taken) == 0
    assert [e["data"]["i"] for e in buf.take()] == [2, 1, 3]  # put back ahead of what came later
    assert len(buf) == 0
