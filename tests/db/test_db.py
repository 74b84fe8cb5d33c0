"""worker.db against real SQLite and PostgreSQL (the `database_url` fixture runs each test on both)."""

from __future__ import annotations

import datetime as dt
import json

import peewee as pw
import pytest

from worker import db


@pytest.fixture
def database(database_url: str):
    conn = db.init_db(database_url)
    yield conn
    conn.close()


def test_init_db_is_idempotent_and_creates_tables(database, database_url: str) -> None:
    again = db.init_db(database_url)
    assert again is database
    for model in db.MODELS:
        assert model.table_exists()


def test_sqlite_pragmas(database, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_call_roundtrip_and_to_dict(database) -> None:
    call = db.Call.create(number="+15550100100", intent="cancel my plan", options=db.dumps({"a": 1}))
    assert len(call.id) == 32
    t0 = dt.datetime(2026, 11, 25, 14, 0, 0)
    call.hold_started_at = t0
    call.human_detected_at = t0 + dt.timedelta(seconds=754.5)
    call.status = "human_detected"
    call.save()
    got = db.Call.get_by_id(call.id)
    d = got.to_dict()
    assert d["call_id"] == call.id
    assert d["status"] == "human_detected"
    assert d["hold_seconds"] == 754.5
    assert d["hold_started_at"] == "2026-11-25T14:00:00+00:00"
    assert d["options"] == {"a": 1}
    assert d["final"] is False
    json.dumps(d)  # the REST shape is plain JSON


def test_hold_seconds_while_holding_uses_now(database) -> None:
    t0 = dt.datetime(2026, 11, 25, 14, 0, 0)
    call = db.Call.create(number="+15550100100", hold_started_at=t0, status="holding")
    assert call.hold_seconds(now=t0 + dt.timedelta(seconds=30)) == 30.0
    assert db.Call.create(number="+15550100100").hold_seconds() is None


def test_callflow_versions(database) -> None:
    v1 = db.CallFlow.create(name="acme", number="+15550100100", steps=db.dumps([{"type": "HOLD"}]))
    v2 = v1.new_version(steps=db.dumps([{"type": "DTMF", "digits": "1"}, {"type": "HOLD"}]))
    assert (v1.version, v2.version) == (1, 2)
    assert v2.id != v1.id and v2.name == "acme"
    assert db.CallFlow.latest("acme").id == v2.id
    assert db.CallFlow.latest(v1.id).id == v2.id
    assert db.CallFlow.latest(str(v1.id)).id == v2.id
    assert db.CallFlow.latest("nope") is None
    assert db.CallFlow.latest(99999) is None
    assert db.CallFlow.for_number("+15550100100").id == v2.id
    assert db.CallFlow.for_number("+15550100199") is None
    assert [f.id for f in db.CallFlow.current()] == [v2.id]
    assert v2.to_dict()["steps"][0] == {"type": "DTMF", "digits": "1"}
    with pytest.raises(pw.IntegrityError), db.database.atomic():
        db.CallFlow.create(name="acme", number="+15550100100", version=2)


def test_deleted_flow_is_hidden_but_calls_keep_it(database) -> None:
    flow = db.CallFlow.create(name="acme", number="+15550100100")
    call = db.Call.create(number="+15550100100", call_flow=flow)
    db.CallFlow.update(deleted=True).where(db.CallFlow.name == "acme").execute()
    assert db.CallFlow.latest("acme") is None
    assert db.CallFlow.for_number("+15550100100") is None
    assert db.Call.get_by_id(call.id).call_flow_id == flow.id


def test_device_default_is_first_enabled(database) -> None:
    assert db.Device.default() is None
    db.Device.create(extension="1000", name="desk", enabled=False)
    db.Device.create(extension="1001", name="kitchen")
    db.Device.create(extension="1002", name="attic")
    assert db.Device.default().extension == "1001"
    with pytest.raises(pw.IntegrityError), db.database.atomic():
        db.Device.create(extension="1001")


def test_events_cascade_and_foreign_keys(database) -> None:
    call = db.Call.create(number="+15550100100")
    db.CallEvent.create(call=call, type="call.queued", ts=1.5, data=db.dumps({"x": 1}))
    assert [e.to_dict() for e in call.events] == [
        {"type": "call.queued", "call_id": call.id, "ts": 1.5, "data": {"x": 1}}
    ]
    with pytest.raises(pw.IntegrityError), db.database.atomic():
        db.CallEvent.create(call="missing", type="call.queued", ts=1.0)


def test_fingerprints(database) -> None:
    db.Fingerprint.store("+15550100100", {"hashes": [1, 2, 3]})
    db.Fingerprint.store("+15550100100", {"hashes": [4]}, kind="other")
    got = db.Fingerprint.for_number("+15550100100")
    assert [f.fingerprint_json for f in got] == [{"hashes": [1, 2, 3]}]
    assert db.Fingerprint.for_number("+15550100199") == []


def test_empty_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        db.connect("")


def test_connections_are_pooled_and_reused(database) -> None:
    from playhouse.pool import PooledDatabase

    assert isinstance(db.database.obj, PooledDatabase)
    db.database.close()
    with db.database.connection_context():
        first = db.database.connection()
        assert db.Call.select().count() == 0
    with db.database.connection_context():  # handed back, then handed out again: no new connect
        assert db.database.connection() is first


@pytest.mark.parametrize(
    ("url", "pooled", "defaults"),
    [
        ("sqlite:///x.db", "sqlite+pool:///x.db", db.POOL_DEFAULTS["sqlite"]),
        ("sqlite:///:memory:", "sqlite:///:memory:", {}),
        ("sqlite+pool:///x.db?max_connections=5", "sqlite+pool:///x.db?max_connections=5",
         {k: v for k, v in db.POOL_DEFAULTS["sqlite"].items() if k != "max_connections"}),
        ("postgresql://u@h/d", "postgresql+pool://u@h/d", db.POOL_DEFAULTS["postgres"]),
        ("postgres://u@h/d?timeout=3", "postgres+pool://u@h/d?timeout=3",
         {k: v for k, v in db.POOL_DEFAULTS["postgres"].items() if k != "timeout"}),
        ("mysql://u@h/d", "mysql://u@h/d", {}),
    ],
)
def test_pooled_url(url: str, pooled: str, defaults: dict) -> None:
    assert db.pooled_url(url) == (pooled, defaults)
