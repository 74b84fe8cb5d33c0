"""End to end: REST -> RQ -> worker -> stand-in switch -> desk phone, and every way a call can end.

Each test ends with the switch holding no channel at all: no leg is ever left up.
"""

from __future__ import annotations

import signal

import pytest
from e2e_env import (
    BANK,
    BUSY,
    IMPATIENT,
    LONG_HOLD,
    NO_ANSWER,
    PATIENT,
    UNKNOWN,
    assert_no_channels,
    channels,
)

from sim.demo import Stack
from worker import db

pytestmark = pytest.mark.e2e


def _place(stack: Stack, number: str, **extra) -> str:
    return stack.place_call({"number": number, "intent": "talk to a person about my bill", **extra})


def _row(stack: Stack, call_id: str) -> db.Call:
    db.init_db(stack.database_url)
    with db.database.connection_context():
        return db.Call.get_by_id(call_id)


def _proc_of(stack: Stack, worker_id: str) -> str:
    """The Stack process name of a worker id (`<name>-<hex>`)."""
    name = worker_id.rsplit("-", 1)[0]
    assert name in stack.procs, (worker_id, list(stack.procs))
    return name


def _types(stack: Stack, call_id: str) -> list[str]:
    return [e["type"] for e in stack.timeline(call_id)]


def test_hold_then_agent_is_bridged_to_the_desk_phone(stack: Stack):
    call_id = _place(stack, BANK, transfer_to="1000")
    call = stack.wait_status(call_id, {"transferred"} | {s for s in db.FINAL_STATUSES})
    assert call["status"] == "transferred", call
    assert call["bridged_at"] and call["human_detected_at"] and call["hold_started_at"]
    assert 1.5 < call["hold_seconds"] < 30.0     # ~60 s of hold music at x20 is ~3 s on the wall clock
    types = _types(stack, call_id)
    for expected in ("call.dialing", "call.answered", "ivr.dtmf", "hold.started", "human.detected",
                     "agent.prompt", "device.ringing", "device.answered", "call.bridged"):
        assert expected in types, (expected, types)
    dtmf = [e["data"]["digits"] for e in stack.timeline(call_id) if e["type"] == "ivr.dtmf"]
    assert dtmf[:2] == ["1", "2"]
    # The agent hangs up: the desk leg follows, the call keeps its status and gets its end.
    row = _row(stack, call_id)
    assert row.company_uuid and row.desk_uuid
    stack.esl_api(f"uuid_kill {row.company_uuid}")
    final = stack.wait_final(call_id, timeout=30)
    assert final["status"] == "transferred" and final["ended_at"]
    assert_no_channels(stack)


@pytest.mark.parametrize(("number", "expected"), [(BUSY, "busy"), (NO_ANSWER, "no_answer"), (UNKNOWN, "sit")])
def test_company_never_answers(stack: Stack, number: str, expected: str):
    call_id = _place(stack, number, transfer_to="1000")
    final = stack.wait_final(call_id, timeout=60)
    assert final["status"] == expected, final
    assert final["bridged_at"] is None and final["ended_at"]
    assert "call.ended" in _types(stack, call_id)
    assert_no_channels(stack)


def test_desk_phone_not_registered(stack: Stack):
    call_id = _place(stack, PATIENT, transfer_to="1002")
    final = stack.wait_final(call_id, timeout=60)
    assert final["status"] == "device_unavailable", final
    assert final["human_detected_at"] and final["bridged_at"] is None
    assert_no_channels(stack)


def test_agent_hangs_up_before_the_user_answers(stack: Stack):
    call_id = _place(stack, IMPATIENT, transfer_to="1001")
    final = stack.wait_final(call_id, timeout=60)
    assert final["status"] == "agent_hung_up", final
    assert "device.ringing" in _types(stack, call_id)
    assert_no_channels(stack)


@pytest.mark.parametrize(("desk", "expected"), [("1003", "transferred"), ("1004", "user_no_answer")])
def test_screening_bridges_only_when_the_user_presses_1(stack: Stack, desk: str, expected: str):
    options = {"screen": True, "screen_timeout_s": 3, "desk_retries": 0}
    call_id = _place(stack, PATIENT, transfer_to=desk, options=options)
    call = stack.wait_status(call_id, db.FINAL_STATUSES, timeout=60)
    assert call["status"] == expected, call
    if expected == "transferred":
        stack.esl_api(f"uuid_kill {_row(stack, call_id).company_uuid}")
        stack.wait_final(call_id, timeout=30)
    assert_no_channels(stack)


def test_cancel_during_hold(stack: Stack):
    call_id = _place(stack, LONG_HOLD, transfer_to="1000")
    stack.wait_status(call_id, {"holding"}, timeout=30)
    status, body = stack.http("POST", f"/api/calls/{call_id}/hangup")
    assert status == 202, body
    final = stack.wait_final(call_id, timeout=30)
    assert final["status"] == "canceled", final
    assert_no_channels(stack)


def test_sigterm_warm_shutdown_ends_calls_after_grace(stack: Stack):
    stack.start_worker("worker-term")
    call_id = _place(stack, LONG_HOLD, transfer_to="1000")
    stack.wait_status(call_id, {"holding"}, timeout=30)
    owner = _row(stack, call_id).worker_id
    name = _proc_of(stack, owner)
    stack.procs[name].popen.send_signal(signal.SIGTERM)
    assert stack.procs[name].popen.wait(30) == 0          # grace (5 s) over: calls interrupted, clean exit
    final = stack.wait_final(call_id, timeout=10)
    assert (final["status"], final["status_reason"]) == ("failed", "worker_shutdown"), final
    assert_no_channels(stack)


def test_worker_killed_mid_hold_is_reaped_by_another_worker(stack: Stack):
    stack.start_worker("worker2")
    call_id = _place(stack, LONG_HOLD, transfer_to="1000")
    stack.wait_status(call_id, {"holding"}, timeout=30)
    owner = _row(stack, call_id).worker_id
    victim = _proc_of(stack, owner)
    assert channels(stack)["row_count"] == 1
    stack.kill(victim, signal.SIGKILL)
    final = stack.wait_final(call_id, timeout=30)
    assert (final["status"], final["status_reason"]) == ("failed", "worker_lost"), final
    assert_no_channels(stack)
