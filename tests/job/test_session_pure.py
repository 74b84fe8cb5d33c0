"""The job's pure decisions and the control hub (real Redis pub/sub)."""

from __future__ import annotations

import gevent
import gevent.queue
import pytest

from worker.esl_protocol import originate_cmd, safe_var_value
from worker.job import ControlHub
from worker.session import (
    PROMPT_END_SILENCE_S,
    Msg,
    PromptEnd,
    bgapi_result,
    originate_status,
    parse_control,
)


def test_prompt_end_needs_sound_then_quiet_and_sound_restarts_the_count():
    p = PromptEnd()
    p.state("silence", 1.0)
    assert not p.ended(10.0)                      # quiet before anything was said is no prompt
    p.state("speech", 2.0)
    p.state("silence", 4.0)
    assert not p.ended(4.0 + PROMPT_END_SILENCE_S - 0.01)
    p.state("music", 4.5)                         # sound again: the prompt goes on
    p.state("silence", 5.0)
    assert not p.ended(4.0 + PROMPT_END_SILENCE_S)
    assert p.ended(5.0 + PROMPT_END_SILENCE_S)
    p.state("silence", 6.0)                       # a repeated silence state keeps the first moment
    assert p.quiet_since == 5.0


@pytest.mark.parametrize(
    ("cause", "status"),
    [("USER_BUSY", "busy"), ("NO_ANSWER", "no_answer"), ("NO_USER_RESPONSE", "no_answer"),
     ("ORIGINATOR_CANCEL", "no_answer"), ("UNALLOCATED_NUMBER", "sit"), ("NO_ROUTE_DESTINATION", "sit"),
     ("NORMAL_TEMPORARY_FAILURE", "failed"), ("GATEWAY_DOWN", "failed"), (" user_busy\n", "busy")],
)
def test_originate_causes_map_to_statuses(cause, status):
    assert originate_status(cause) == status


def test_bgapi_result_reads_background_job_bodies():
    assert bgapi_result("+OK 1d9c-uuid\n") == (True, "1d9c-uuid")
    assert bgapi_result("-ERR USER_BUSY\n") == (False, "USER_BUSY")
    assert bgapi_result("-ERR NO_ANSWER\n") == (False, "NO_ANSWER")
    assert bgapi_result("-ERR\n") == (False, "UNKNOWN")
    assert bgapi_result("") == (False, "UNKNOWN")


def test_caller_name_is_made_safe_then_escaped_for_the_originate_parser():
    """The company name shown on the desk phone goes through the ESL builders the session uses."""
    name = safe_var_value('Acme "Bank", Inc.')
    cmd = originate_cmd("user/1000@127.0.0.1", {"origination_uuid": "u1", "origination_caller_id_name": name})
    assert cmd == (
        r"originate {origination_uuid=u1,origination_caller_id_name=Acme\sBank\,\sInc.}"
        "user/1000@127.0.0.1 &park()"
    )


def test_parse_control():
    assert parse_control(b'{"action":"hangup"}') == {"action": "hangup"}
    assert parse_control('{"action":"dtmf","digits":"12#"}') == {"action": "dtmf", "digits": "12#"}
    for bad in (b"nope", b'{"action":"explode"}', b'{"action":"dtmf","digits":"1;uuid_kill x"}',
                b'{"action":"dtmf"}', b"[]"):
        with pytest.raises(ValueError):
            parse_control(bad)


class _Session:
    def __init__(self) -> None:
        self.inbox: gevent.queue.Queue = gevent.queue.Queue()


class _Rt:
    def __init__(self) -> None:
        self.active: dict[str, _Session] = {}


def test_control_hub_routes_messages_to_the_running_call(redis_conn, uniq):
    rt = _Rt()
    mine = _Session()
    c1 = f"{uniq}c1"
    rt.active[c1] = mine
    hub = ControlHub(redis_conn, rt)  # type: ignore[arg-type]
    hub.start()
    try:
        assert hub.ready.wait(5)
        # psubscribe is confirmed asynchronously: publish until the hub has a subscriber
        with gevent.Timeout(5, AssertionError("hub never subscribed")):
            while redis_conn.publish(f"hs:control:{uniq}nobody", b'{"action":"hangup"}') == 0:
                gevent.sleep(0.01)
        redis_conn.publish(f"hs:control:{c1}", b'{"action":"dtmf","digits":"5"}')
        redis_conn.publish(f"hs:control:{c1}", b"garbage")
        redis_conn.publish(f"hs:control:{c1}", b'{"action":"hangup"}')
        first: Msg = mine.inbox.get(timeout=5)
        second: Msg = mine.inbox.get(timeout=5)
        assert (first.kind, first.data) == ("ctl", {"action": "dtmf", "digits": "5"})
        assert (second.kind, second.data) == ("ctl", {"action": "hangup"})
        assert mine.inbox.empty()
        assert hub.route("hs:control:other", b'{"action":"hangup"}') is False
    finally:
        hub.stop()
