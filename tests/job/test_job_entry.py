"""worker.job.hold_slayer before any dialing: idempotence, cancel-before-dial, the missing runtime."""

from __future__ import annotations

import pytest

from worker import db, job, queueing
from worker.config import Settings
from worker.prompts import Prompts
from worker.session import Runtime


class NoSwitch:
    """Any use of the switch fails the test: these paths must never dial."""

    connected = True
    load = 0

    def __getattr__(self, name):
        raise AssertionError(f"the switch was used: {name}")


@pytest.fixture
def runtime(database_url, redis_conn, tmp_path):
    d = db.init_db(database_url)
    rt = Runtime(settings=Settings(database_url=database_url), redis=redis_conn, clients=[NoSwitch()],
                 fork_server=NoSwitch(), prompts=Prompts(tmp_path), worker_id="test-worker")
    job.install(rt)
    yield rt
    job.install(None)
    d.close()


def _call(status: str, **kw) -> db.Call:
    with db.database.connection_context():
        return db.Call.create(number="+15550100100", status=status, **kw)


def test_a_final_call_is_not_dialed_again(runtime):
    call = _call("busy", status_reason="originate: USER_BUSY")
    out = job.hold_slayer({"call_id": call.id})
    expected = {"call_id": call.id, "status": "busy", "reason": "originate: USER_BUSY", "hold_seconds": None}
    assert out == expected


def test_a_call_running_elsewhere_is_not_dialed_twice(runtime):
    call = _call("holding", worker_id="other-worker")
    assert job.hold_slayer({"call_id": call.id})["status"] == "holding"
    with db.database.connection_context():
        assert db.Call.get_by_id(call.id).worker_id == "other-worker"


def test_cancel_before_dialing(runtime, redis_conn):
    call = _call("queued")
    redis_conn.set(queueing.cancel_flag_key(call.id), "1", ex=60)
    try:
        out = job.hold_slayer({"call_id": call.id})
    finally:
        redis_conn.delete(queueing.cancel_flag_key(call.id))
    assert out["status"] == "canceled"
    with db.database.connection_context():
        row = db.Call.get_by_id(call.id)
        assert row.ended_at is not None
        assert [e.type for e in row.events] == ["call.ended"]


def test_bad_requests_get_clear_errors(runtime):
    from worker.errors import EmergencyNumber, ValidationError

    with pytest.raises(EmergencyNumber):
        job.hold_slayer({"number": "911", "intent": "help"})
    with pytest.raises(ValidationError):
        job.hold_slayer({"intent": "no number"})


def test_needs_the_worker_runtime():
    job.install(None)
    with pytest.raises(RuntimeError, match="python -m worker"):
        job.hold_slayer({"call_id": "x"})
