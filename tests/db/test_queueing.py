"""worker.queueing: validation, launch (all or nothing), the RQ job, control messages, cancel."""

from __future__ import annotations

import json
import time
import uuid
import zlib
from dataclasses import replace

import pytest
import rq
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from worker import db, errors, events, queueing
from worker.config import Settings

SETTINGS = replace(Settings(), queue_name="hs-test", max_hold_s=600)


@pytest.fixture
def database(database_url: str):
    conn = db.init_db(database_url)
    db.Device.create(extension="1000", name="desk")
    yield conn
    conn.close()


def _queue(redis_conn) -> rq.Queue:
    return rq.Queue(SETTINGS.queue_name, connection=redis_conn, serializer=JSONSerializer)


def test_launch_stores_publishes_and_enqueues(database, redis_conn) -> None:
    flow = db.CallFlow.create(name="acme", number="+15550100100", steps=db.dumps([{"type": "HOLD"}]))
    body = {"number": "+1 (555) 010-0100", "intent": "  cancel  ", "options": {"account_number": "1234"}}
    call, job = queueing.launch(redis_conn, body, SETTINGS)
    assert call.status == "queued" and call.number == "+15550100100" and call.intent == "cancel"
    assert call.call_flow_id == flow.id                    # matched by number
    assert call.transfer_to == "1000"
    assert job.id == call.id == db.Call.get_by_id(call.id).job_id
    fetched = Job.fetch(call.id, connection=redis_conn, serializer=JSONSerializer)
    assert fetched.func_name == "worker.job.hold_slayer"
    assert fetched.args == [{
        "number": "+15550100100", "intent": "cancel", "call_flow_id": flow.id, "transfer_to": "1000",
        "options": {"account_number": "1234"}, "call_id": call.id,
    }]
    assert fetched.timeout == SETTINGS.max_hold_s + queueing.JOB_TIMEOUT_MARGIN_S
    assert fetched.meta["call_id"] == call.id
    assert "1234" not in fetched.description               # options stay off the dashboard
    assert _queue(redis_conn).get_job_ids() == [call.id]
    # the raw payload in Redis really is JSON (zlib-compressed by RQ): other languages can read it
    raw = json.loads(zlib.decompress(redis_conn.hget(f"rq:job:{call.id}", "data")))
    assert raw[0] == "worker.job.hold_slayer" and raw[2][0]["call_id"] == call.id
    hist = events.history(redis_conn, call.id)
    assert [e["type"] for e in hist] == ["call.queued"]
    assert hist[0]["data"]["number"] == "+15550100100"


def test_unknown_flow_device_and_bad_number_create_nothing(database, redis_conn) -> None:
    cases = [
        ({"number": "+15550100100", "intent": "x", "call_flow_id": 42}, errors.UnknownCallFlow),
        ({"number": "+15550100100", "intent": "x", "call_flow_id": "nope"}, errors.UnknownCallFlow),
        ({"number": "+15550100100", "intent": "x", "transfer_to": "2000"}, errors.UnknownDevice),
        ({"number": "911", "intent": "x"}, errors.EmergencyNumber),
        ({"number": "+15550100100"}, errors.SchemaViolation),
        ({"number": "+15550100100", "intent": "x", "bogus": 1}, errors.SchemaViolation),
    ]
    for body, error in cases:
        with pytest.raises(error):
            queueing.launch(redis_conn, body, SETTINGS)
    assert db.Call.select().count() == 0
    assert _queue(redis_conn).count == 0


def test_disabled_or_missing_devices(database, redis_conn) -> None:
    db.Device.update(enabled=False).execute()
    with pytest.raises(errors.UnknownDevice, match="no enabled device"):
        queueing.validate_request({"number": "+15550100100", "intent": "x"}, SETTINGS)
    with pytest.raises(errors.UnknownDevice, match="disabled"):
        queueing.validate_request({"number": "+15550100100", "intent": "x", "transfer_to": "1000"}, SETTINGS)


def test_options_devices_must_be_enabled_devices(database) -> None:
    db.Device.create(extension="1001", enabled=False)
    body = {"number": "+15550100100", "intent": "x", "options": {"devices": "1000"}}
    ok = queueing.validate_request(body, SETTINGS)
    assert ok["options"] == {"devices": "1000"}
    for devices, error in (("1000,1001", errors.UnknownDevice), ("1000,9999", errors.UnknownDevice),
                           ("1000;evil", errors.SchemaViolation), ("", errors.SchemaViolation)):
        with pytest.raises(error):
            body = {"number": "+15550100100", "intent": "x", "options": {"devices": devices}}
            queueing.validate_request(body, SETTINGS)


def test_failed_enqueue_leaves_nothing(database, redis_conn, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ConnectionError("redis went away")

    monkeypatch.setattr(queueing, "enqueue_hold_slayer", broken)
    with pytest.raises(ConnectionError):
        queueing.launch(redis_conn, {"number": "+15550100100", "intent": "x"}, SETTINGS)
    assert db.Call.select().count() == 0 and db.CallEvent.select().count() == 0
    assert redis_conn.keys("hs:history:*") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"intent": "x"}, "number"),
        ({"number": "+15550100100", "intent": ""}, "intent"),
        ({"number": "+15550100100", "intent": "x", "options": {"max_hold_s": "long"}}, "options.max_hold_s"),
        ({"number": "+15550100100", "intent": "x", "transfer_to": "1000,user/2"}, "transfer_to"),
        ({"number": 15550100100, "intent": "x"}, "number"),
    ],
)
def test_schema_errors_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(errors.SchemaViolation) as info:
        queueing.check_schema("hold_slayer_request", body)
    assert info.value.details["field"] == field
    assert str(info.value).startswith(field)


def test_call_flow_schema_paths() -> None:
    steps = [{"type": "HOLD"}, {"type": "DTMF", "digits": "x"}]
    bad = {"name": "a", "number": "+15550100100", "steps": steps}
    with pytest.raises(errors.SchemaViolation) as info:
        queueing.check_schema("call_flow", bad)
    assert info.value.details["field"] == "steps[1].digits"
    queueing.check_schema("call_flow", {
        "name": "acme", "number": "+15550100100", "steps": [
            {"type": "LISTEN", "timeout_s": 8, "expect": ["billing"]}, {"type": "DTMF", "digits": "2"},
            {"type": "SPEAK", "say": "account_number"}, {"type": "WAIT", "seconds": 1.5},
            {"type": "HOLD", "max_s": 3600}, {"type": "TRANSFER"},
        ]})
    for step in ({"type": "SPEAK"}, {"type": "SPEAK", "text": "hi", "say": "x"}, {"type": "JUMP"},
                 {"type": "WAIT"}, {"type": "HOLD", "digits": "1"}):
        with pytest.raises(errors.SchemaViolation):
            queueing.check_schema("call_flow", {"name": "a", "number": "+1", "steps": [step]})


def test_ensure_call_for_directly_enqueued_jobs(database, redis_conn) -> None:
    job_id = "0b5f3d0e-8a57-4c36-9a4e-5b0f5f2a2c11"
    call, req = queueing.ensure_call(redis_conn, {"number": "15550100100", "intent": "x"}, SETTINGS, job_id)
    assert call.id == job_id.replace("-", "") == req["call_id"]
    assert call.job_id == job_id and req["number"] == "+15550100100"
    again, _ = queueing.ensure_call(redis_conn, {**req}, SETTINGS, job_id)
    assert again.id == call.id and db.Call.select().count() == 1
    with pytest.raises(errors.EmergencyNumber):
        queueing.ensure_call(redis_conn, {"number": "112", "intent": "x"}, SETTINGS, "j2")


def test_send_control(redis_conn) -> None:
    cid = uuid.uuid4().hex            # workers elsewhere psubscribe hs:control:*: counts are ">= 1"
    pubsub = redis_conn.pubsub()
    pubsub.subscribe(queueing.control_channel(cid))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    assert queueing.send_control(redis_conn, cid, "dtmf", digits="12#") >= 1
    assert queueing.send_control(redis_conn, cid, "hangup") >= 1
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if msg:
            got.append(json.loads(msg["data"]))
    pubsub.close()
    assert got == [{"action": "dtmf", "digits": "12#"}, {"action": "hangup"}]
    assert redis_conn.get(queueing.cancel_flag_key(cid)) == b"1"
    for action, data in (("dtmf", {"digits": "12x"}), ("dtmf", {}), ("explode", {})):
        with pytest.raises(ValueError):
            queueing.send_control(redis_conn, cid, action, **data)


def test_cancel_queued_call(database, redis_conn) -> None:
    call, job = queueing.launch(redis_conn, {"number": "+15550100100", "intent": "x"}, SETTINGS)
    assert queueing.cancel_call(redis_conn, call, SETTINGS) is True
    got = db.Call.get_by_id(call.id)
    assert got.status == "canceled" and got.ended_at is not None
    fetched = Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer)
    assert fetched.get_status() == JobStatus.CANCELED
    assert _queue(redis_conn).count == 0
    assert events.history(redis_conn, call.id)[-1]["type"] == "call.ended"
    with pytest.raises(errors.Conflict):
        queueing.cancel_call(redis_conn, got, SETTINGS)


def test_cancel_running_call_only_signals(database, redis_conn) -> None:
    call, _ = queueing.launch(redis_conn, {"number": "+15550100100", "intent": "x"}, SETTINGS)
    db.Call.update(status="holding").where(db.Call.id == call.id).execute()
    assert queueing.cancel_call(redis_conn, db.Call.get_by_id(call.id), SETTINGS) is False
    assert db.Call.get_by_id(call.id).status == "holding"
    assert redis_conn.get(queueing.cancel_flag_key(call.id)) == b"1"
