"""Call events: every step of a call is stored, published and kept as history.

    publish(redis_conn, call_id, "hold.started", {"after_s": 42.0})

does three things, in this order:

1. stores a `CallEvent` row (the durable record; skipped with a warning when the
   call row does not exist),
2. PUBLISHes the JSON event on `hs:events` (everything) and `hs:events:<call_id>`,
3. RPUSHes it to `hs:history:<call_id>` (capped at HISTORY_MAX, expires after
   HISTORY_TTL_S) so late subscribers (the call page) can catch up.

High-rate types (BATCHED_TYPES: `detector.state`, several a second per call,
emitted from the audio hub's rounds) do not wait for Redis either: they go to
a per-process outbox that a sender greenlet PUBLISHes and RPUSHes every
OUTBOX_INTERVAL_S in one pipeline, and that any other event drains first (so
a call's Redis history keeps publish order; `flush()` drains it too).  Their
rows go to a
per-process buffer written in one INSERT per batch: by a writer (a thread, a
greenlet under gevent) at least every FLUSH_INTERVAL_S, before any other event
of the same call is stored (so a call's rows keep their order: `call.ended`
flushes the call's rows first), by `flush()` (call it on shutdown; an `atexit`
hook does too) and before `history()` reads the database.  If the database
fails, the rows stay buffered and are retried (a warning per failed flush);
only past MAX_PENDING rows are the oldest dropped, with an error naming how
many.  `stats()` tells what was written, is pending and was dropped.

A Redis outage never fails the caller: the row is stored and the event is still
returned; `history()` falls back to the database.  The event shape is
`{"type", "call_id", "ts", "data"}` (schemas/event.json).
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee as pw
import redis

from worker import db

log = logging.getLogger(__name__)

CHANNEL_ALL = "hs:events"
HISTORY_MAX = 2000                    # events kept per call in Redis
HISTORY_TTL_S = 7 * 24 * 3600         # seconds a call's Redis history lives after its last event
BATCHED_TYPES = frozenset({"detector.state"})  # rows written in batches (published at once all the same)
OUTBOX_INTERVAL_S = 0.05              # seconds: batched types reach Redis at most this late
FLUSH_INTERVAL_S = 1.0                # seconds: the writer stores buffered rows at least this often
MAX_PENDING = 100_000                 # buffered rows kept while the database fails; then the oldest go
INSERT_CHUNK = 200                    # rows per INSERT (4 columns: under SQLite's 999-variable limit)
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
    batched = type in BATCHED_TYPES
    if store:
        if batched:
            _writer.add(event)
        else:
            _writer.flush(call_id)     # this call's buffered rows first: its rows stay in order
            _store(event)
    if redis_conn is not None:
        payload = json.dumps(event, separators=(",", ":"))
        if batched:
            _outbox.add(redis_conn, call_id, payload)
        else:
            _outbox.send(redis_conn, (call_id, payload))
    log.debug("call %s: event %s", call_id, type)
    return event


def _queue_event(pipe: Any, call_id: str, payload: str) -> None:
    pipe.rpush(history_key(call_id), payload)
    pipe.ltrim(history_key(call_id), -HISTORY_MAX, -1)
    pipe.expire(history_key(call_id), HISTORY_TTL_S)
    pipe.publish(channel_for(call_id), payload)
    pipe.publish(CHANNEL_ALL, payload)


class _Outbox:
    """Batched-type events waiting for Redis, and the thread (greenlet under gevent) that sends them.

    One lock around every send keeps the order: what waits goes out before (and in the same pipeline
    as) the next event sent at once."""

    def __init__(self) -> None:
        self._items: list[tuple[redis.Redis, str, str]] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, conn: redis.Redis, call_id: str, payload: str) -> None:
        self._items.append((conn, call_id, payload))
        self._wake.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="hs-event-outbox", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()             # idle until something waits (no polling)
            time.sleep(OUTBOX_INTERVAL_S)  # gather what the next rounds add: one pipeline for all
            self._wake.clear()
            if self._items:
                self.send()

    def send(self, conn: redis.Redis | None = None, event: tuple[str, str] | None = None) -> None:
        """Send what waits, then `event` (call_id, payload) on `conn`; Redis errors are logged."""
        with self._lock:
            items, self._items = self._items, []
            if event is not None and conn is not None:
                items.append((conn, *event))
            by_conn: dict[int, tuple[redis.Redis, list[tuple[str, str]]]] = {}
            for c, cid, payload in items:
                by_conn.setdefault(id(c), (c, []))[1].append((cid, payload))
            for c, evs in by_conn.values():
                try:
                    pipe = c.pipeline(transaction=False)
                    for cid, payload in evs:
                        _queue_event(pipe, cid, payload)
                    pipe.execute()
                except redis.RedisError as exc:
                    log.warning("events: %d event(s) not published (%s); stored only", len(evs), exc)


def _store(event: dict[str, Any]) -> int:
    """One row now; 1 if stored, 0 when the call row does not exist (logged)."""
    try:
        with db.database.atomic():      # a savepoint: a failure here never poisons the caller's transaction
            db.CallEvent.create(
                call=event["call_id"], type=event["type"], ts=event["ts"], data=db.dumps(event["data"])
            )
        return 1
    except pw.IntegrityError:
        log.warning("call %s: event %s not stored: no such call row", event["call_id"], event["type"])
        return 0


def flush(call_id: str | None = None) -> int:
    """Store the buffered rows now (of one call, or all); returns how many were written.

    Never raises: on a database error the rows stay buffered for the next flush (logged).
    Events still waiting for Redis are sent first.
    """
    _outbox.send()
    return _writer.flush(call_id)


def stats() -> dict[str, int]:
    """Buffered-row counters of this process: pending, written, dropped, failed_flushes."""
    return _writer.stats()


class RowBuffer:
    """Pure: events waiting to be stored, per call in publish order, capped at `max_rows` in all."""

    def __init__(self, max_rows: int = MAX_PENDING) -> None:
        self.max_rows = max_rows
        self._calls: dict[str, list[dict[str, Any]]] = {}
        self._count = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def has(self, call_id: str | None = None) -> bool:
        """Anything buffered (for `call_id`, or at all)?"""
        return bool(self._count) if call_id is None else call_id in self._calls

    def add(self, event: dict[str, Any]) -> int:
        """Buffer one event; returns how many old rows were dropped to make room (0 normally)."""
        self._calls.setdefault(event["call_id"], []).append(event)
        self._count += 1
        return self._trim()

    def take(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Remove and return the rows of `call_id` (or all), each call's rows in order."""
        if call_id is not None:
            rows = self._calls.pop(call_id, [])
        else:
            rows = [ev for evs in self._calls.values() for ev in evs]
            self._calls = {}
        self._count -= len(rows)
        return rows

    def put_back(self, rows: list[dict[str, Any]]) -> int:
        """Return rows that could not be stored, ahead of what was buffered since; returns rows dropped."""
        back: dict[str, list[dict[str, Any]]] = {}
        for ev in rows:
            back.setdefault(ev["call_id"], []).append(ev)
        for cid, evs in self._calls.items():
            back.setdefault(cid, []).extend(evs)
        self._calls = back
        self._count += len(rows)
        return self._trim()

    def _trim(self) -> int:
        dropped = 0
        while self._count > self.max_rows:
            oldest = min(self._calls, key=lambda cid: self._calls[cid][0]["ts"])
            evs = self._calls[oldest]
            evs.pop(0)
            if not evs:
                del self._calls[oldest]
            self._count -= 1
            dropped += 1
        self.dropped += dropped
        return dropped


class _Writer:
    """The process's buffered rows and the thread (greenlet under gevent) that stores them."""

    def __init__(self) -> None:
        self.buffer = RowBuffer()
        self._lock = threading.RLock()   # one flush at a time: a call's rows are stored in order
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.written = 0
        self.failed_flushes = 0
        self.stored = threading.Event()  # set after each flush that stored rows (tests wait on it)

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            dropped = self.buffer.add(event)
        if dropped:
            log.error("events: %d buffered row(s) dropped (more than %d waiting for the database)",
                      dropped, self.buffer.max_rows)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="hs-event-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self.flush()

    def stats(self) -> dict[str, int]:
        return {"pending": len(self.buffer), "written": self.written, "dropped": self.buffer.dropped,
                "failed_flushes": self.failed_flushes}

    def flush(self, call_id: str | None = None) -> int:
        if not self.buffer.has(call_id):
            return 0
        rows: list[dict[str, Any]] = []
        try:
            # the connection before the lock: never hold the lock while waiting for a pooled connection
            with _connection(), self._lock:
                rows = self.buffer.take(call_id)
                if not rows:
                    return 0
                stored = _insert(rows)
                self.written += stored
                self.stored.set()
                return stored
        except Exception as exc:  # noqa: BLE001 - keep the rows, retry on the next flush
            self.failed_flushes += 1
            with self._lock:
                dropped = self.buffer.put_back(rows) if rows else 0
            log.warning("events: %d buffered row(s) not stored, kept for the next flush: %s",
                        len(rows) or len(self.buffer), exc)
            if dropped:
                log.error("events: %d buffered row(s) dropped (more than %d waiting for the database)",
                          dropped, self.buffer.max_rows)
            return 0


@contextmanager
def _connection() -> Iterator[None]:
    """The caller's open connection if it has one (in its transaction), else a pooled one for the flush."""
    opened = db.database.is_closed()
    if opened:
        db.database.connect()
    try:
        yield
    finally:
        if opened:
            db.database.close()


def _insert(rows: list[dict[str, Any]]) -> int:
    """INSERT the rows in chunks, all in one transaction (a failure stores none of them, so none is stored
    twice on retry); a chunk with a row of an unknown call goes row by row (skipping those)."""
    with db.database.atomic():
        return _insert_chunks(rows)


def _insert_chunks(rows: list[dict[str, Any]]) -> int:
    stored = 0
    for i in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[i : i + INSERT_CHUNK]
        values = [
            {"call": ev["call_id"], "type": ev["type"], "ts": ev["ts"], "data": db.dumps(ev["data"])}
            for ev in chunk
        ]
        try:
            with db.database.atomic():
                db.CallEvent.insert_many(values).execute()
            stored += len(chunk)
        except pw.IntegrityError:
            for ev in chunk:
                stored += _store(ev)
    return stored


_writer = _Writer()
_outbox = _Outbox()


@atexit.register
def _flush_at_exit() -> None:
    if len(_writer.buffer) and db.database.obj is not None:
        flush()


def history(redis_conn: redis.Redis | None, call_id: str) -> list[dict[str, Any]]:
    """All events of a call, oldest first: the Redis list when it exists, else the stored rows."""
    if redis_conn is not None:
        _outbox.send()   # (this process's batched events still on their way)
        try:
            raw = redis_conn.lrange(history_key(call_id), 0, -1)
        except redis.RedisError as exc:
            log.warning("call %s: history from database, Redis failed (%s)", call_id, exc)
            raw = []
        if raw:
            return [json.loads(item) for item in raw]
    flush(call_id)
    ev = db.CallEvent
    rows = ev.select().where(ev.call == call_id).order_by(ev.ts, ev._meta.primary_key)
    return [row.to_dict() for row in rows]
