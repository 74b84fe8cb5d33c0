"""The pure ESL engine against the real captured bytes, fed in awkward splits."""

from __future__ import annotations

import json

import pytest

from tests.esl.captures import esl_captures, summary_for
from worker import esl_protocol as p
from worker.errors import CommandFailed, OriginateFailed

CAPTURES = esl_captures()


def _feed_in_chunks(data: bytes, size: int | None) -> list[p.Frame]:
    parser = p.EslParser()
    frames: list[p.Frame] = []
    step = size or len(data)
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
        while True:
            frame = parser.next_frame()
            if frame is p.NEED_DATA:
                break
            assert isinstance(frame, p.Frame)
            frames.append(frame)
    assert parser.buffered == 0, "bytes left over after the last frame"
    return frames


def test_captures_found() -> None:
    assert len(CAPTURES) >= 20


@pytest.mark.parametrize("split", [1, 7, None], ids=["1byte", "7bytes", "whole"])
@pytest.mark.parametrize("recv", CAPTURES, ids=[c.stem.removesuffix(".recv") for c in CAPTURES])
def test_capture_frames_match_summary(recv, split) -> None:
    data = recv.read_bytes()
    if split == 1 and len(data) > 200_000:
        data = data[:200_000]  # keep the 1-byte run fast; the 7-byte and whole runs cover the rest
        partial = True
    else:
        partial = False
    frames = _feed_in_chunks(data, split) if not partial else _feed_prefix(data)
    expected = summary_for(recv)
    if partial:
        expected = expected[: len(frames)]
    assert len(frames) == len(expected)
    for frame, item in zip(frames, expected, strict=True):
        if item.kind == "FRAME":
            assert not frame.is_event, item
            outer = "\n".join(f"{k}: {v}" for k, v in frame.headers.pairs)
            assert outer == item.outer
            assert repr(frame.text).startswith(item.body_repr.rstrip("'")), item.index
            continue
        assert frame.is_event
        ev = p.decode_event(frame)
        assert ev.name == item.name, item.index
        for name, value in item.headers.items():
            assert ev.get(name) == value, (item.index, name)
        if item.body_repr:
            assert repr(ev.body).startswith(item.body_repr.rstrip("'")), item.index
        else:
            assert ev.body == ""


def _feed_prefix(data: bytes) -> list[p.Frame]:
    parser = p.EslParser()
    frames: list[p.Frame] = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        frame = parser.next_frame()
        while isinstance(frame, p.Frame):
            frames.append(frame)
            frame = parser.next_frame()
    return frames


def _events(name: str) -> list[p.EslEvent]:
    recv = next(c for c in CAPTURES if c.name == name)
    return [p.decode_event(f) for f in p.parse_frames(recv.read_bytes()) if f.is_event]


def test_plain_event_values_decoded_names_not() -> None:
    ev = _events("esl_api_replies.recv.bin")[1]
    assert ev.name == "BACKGROUND_JOB"
    assert ev.get("FreeSWITCH-IPv6") == "fd00::2"
    assert ev.get("Event-Date-Local") == "2026-11-25 12:54:01"
    assert ev.get("Job-Command-Arg") == "loopback/nonexistent_ext_42/default &park()"
    assert ev.body == "+OK 088b9011-ac16-4073-9864-25cc984aea26\n"
    assert ev.get("Content-Length") == "41"


def test_duplicate_hangup_cause_kept_first_wins() -> None:
    hc = [e for e in _events("gw_busy.recv.bin") if e.name == "CHANNEL_HANGUP_COMPLETE"]
    assert hc
    for ev in hc:
        assert ev.all("Hangup-Cause") == ["USER_BUSY", "USER_BUSY"]
        assert ev.headers["Hangup-Cause"] == "USER_BUSY"


def test_custom_event_subclass_first_and_json_body_raw() -> None:
    evs = _events("esl_audiofork_mono8k_sendback.recv.bin")
    tr = [e for e in evs if e.subclass == "mod_audio_fork::transcription"]
    assert len(tr) == 1
    ev = tr[0]
    assert ev.headers.pairs[0][0] == "Event-Subclass"
    assert ev.name == "CUSTOM" and ev.key == "mod_audio_fork::transcription"
    assert json.loads(ev.body) == {"text": "hello", "final": True}
    assert ev.unique_id


def test_body_is_not_url_decoded() -> None:
    frame = p.Frame(
        p.Headers([("Content-Type", "text/event-plain")]),
        b"Event-Name: CUSTOM\nEvent-Subclass: x%3A%3Ay\nContent-Length: 10\n\na%20b\n\nc:d",
    )
    ev = p.decode_event(frame)
    assert ev.subclass == "x::y"
    assert ev.body == "a%20b\n\nc:d"


def test_json_event_body_and_values() -> None:
    ev = [e for e in _events("esl_callflow_json.recv.bin") if e.name == "BACKGROUND_JOB"][0]
    assert ev.format == "json"
    assert ev.body.startswith("+OK ") and ev.body.endswith("\n")
    assert ev.get("Job-Command") == "originate"
    assert "_body" not in ev.headers


def test_json_arrays_and_non_strings() -> None:
    frame = p.Frame(
        p.Headers([("Content-Type", "text/event-json")]), b'{"Event-Name":"X","a":["1","2"],"n":3}'
    )
    ev = p.decode_event(frame)
    assert ev.get("a") == "ARRAY::1|:2" and ev.get("n") == "3"
    dup = p.Frame(
        p.Headers([("Content-Type", "text/event-json")]),
        b'{"Event-Name":"CHANNEL_HANGUP_COMPLETE","Hangup-Cause":"A","Hangup-Cause":"B","o":{"k":"v"}}',
    )
    ev = p.decode_event(dup)
    assert ev.all("Hangup-Cause") == ["A", "B"] and ev.get("Hangup-Cause") == "A"
    assert ev.get("o") == '{"k":"v"}'
    with pytest.raises(p.EslProtocolError):
        p.decode_event(p.Frame(p.Headers([("Content-Type", "text/event-json")]), b"[1,2]"))


def test_log_data_and_disconnect_frames() -> None:
    frames = p.parse_frames(next(c for c in CAPTURES if c.name == "esl_misc_commands.recv.bin").read_bytes())
    log = [f for f in frames if f.content_type == p.LOG_DATA]
    assert len(log) == 1 and log[0].headers["Log-Level"] == "5"
    assert log[0].headers["User-Data"] == ""
    assert frames[-1].content_type == p.DISCONNECT_NOTICE
    assert frames[-1].text.startswith("Disconnected, goodbye.")


@pytest.mark.parametrize(
    "data",
    [
        b"no colon here\n\n",
        b"Content-Length: x\n\n",
        b"Content-Length: -1\n\n",
        b"Content-Length: 99999999999\n\n",
    ],
)
def test_bad_frames_raise(data) -> None:
    parser = p.EslParser()
    parser.feed(data)
    with pytest.raises(p.EslProtocolError):
        parser.next_frame()


def test_header_block_too_long() -> None:
    parser = p.EslParser()
    parser.feed(b"A: " + b"x" * (p.MAX_HEADER_BLOCK + 10))
    with pytest.raises(p.EslProtocolError):
        parser.next_frame()


def test_rude_rejection_frame() -> None:
    data = b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
    (frame,) = p.parse_frames(data)
    assert frame.content_type == p.RUDE_REJECTION and frame.text == "Access Denied, go away.\n"


def test_decode_event_rejects_non_event() -> None:
    with pytest.raises(p.EslProtocolError):
        p.decode_event(p.Frame(p.Headers([("Content-Type", "api/response")]), b"+OK\n"))


# --- replies -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "status", "detail"),
    [
        ("+OK\n", "ok", ""),
        ("+OK Message sent\n", "ok", "Message sent"),
        ("+OK accepted", "ok", "accepted"),
        ("-ERR No such channel!\n", "err", "No such channel!"),
        ("-ERR no reply\n", "err", "no reply"),
        ("-USAGE: <uuid> <dtmf_data>\n", "usage", "<uuid> <dtmf_data>"),
        ("error/user_not_registered", "err", "error/user_not_registered"),
        ("true", "value", "true"),
        ('{"row_count": 0}\n', "value", '{"row_count": 0}'),
    ],
)
def test_classify_reply(text, status, detail) -> None:
    reply = p.classify_reply(text)
    assert (reply.status, reply.detail) == (status, detail)
    assert reply.ok == (status in ("ok", "value"))


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("-ERR No such channel!\n", True),
        ("-ERR Cannot locate session!\n", True),
        ("-ERR invalid uuid\n", True),
        ("-ERR Invalid uuid\n", True),
        ("-ERR invalid session id [0000]", True),
        ("-ERR Operation Failed\n", False),
        ("+OK\n", False),
    ],
)
def test_is_no_such_channel(text, gone) -> None:
    assert p.is_no_such_channel(text) is gone


def test_parse_originate_result() -> None:
    assert p.parse_originate_result("+OK 088b9011-ac16-4073-9864-25cc984aea26\n") == (
        "088b9011-ac16-4073-9864-25cc984aea26"
    )
    with pytest.raises(OriginateFailed) as exc:
        p.parse_originate_result("-ERR USER_BUSY\n")
    assert exc.value.cause == "USER_BUSY" and exc.value.reply == "-ERR USER_BUSY"
    with pytest.raises(CommandFailed) as usage:
        p.parse_originate_result("-USAGE: <call url> <exten>\n")
    assert not isinstance(usage.value, OriginateFailed)
    with pytest.raises(CommandFailed):
        p.parse_originate_result("")


def test_check_ok() -> None:
    assert p.check_ok("+OK Success\n", "fork").detail == "Success"
    with pytest.raises(CommandFailed) as exc:
        p.check_ok("-ERR Operation Failed\n", "fork")
    assert "fork failed" in str(exc.value) and exc.value.reply == "-ERR Operation Failed"


# --- builders ------------------------------------------------------------------
U = "62fe4c81-2fa6-44a6-a85b-fe1524d7db77"


def test_originate_cmd_quoting() -> None:
    cmd = p.originate_cmd(
        "sofia/gateway/trunk/18005551234",
        {
            "origination_uuid": U,
            "ignore_early_media": True,
            "origination_caller_id_name": "Acme, Inc Billing",
            "hs_call_id": "c1",
            "skipped": None,
        },
    )
    assert cmd == (
        "originate {origination_uuid=" + U + ",ignore_early_media=true,"
        "origination_caller_id_name=Acme\\,\\sInc\\sBilling,hs_call_id=c1}"
        "sofia/gateway/trunk/18005551234 &park()"
    )
    assert " " not in cmd.split(" ")[1]  # the dial argument is one word for FS's splitter


def test_originate_cmd_matches_capture_shape() -> None:
    # The captured command (gateway/gw_answer_fork_bridge.transcript.txt), rebuilt.
    cmd = p.originate_cmd(
        "sofia/gateway/company/5550100", {"origination_uuid": U, "ignore_early_media": "true"}
    )
    assert (
        cmd
        == f"originate {{origination_uuid={U},ignore_early_media=true}}sofia/gateway/company/5550100 &park()"
    )


@pytest.mark.parametrize(
    ("dial", "variables", "app"),
    [
        ("sofia/gateway/trunk/1 800", {}, "park()"),
        ("sofia/gateway/trunk/1\n", {}, "park()"),
        ("{a=b}sofia/x", {}, "park()"),
        ("sofia/x", {"bad name": "v"}, "park()"),
        ("sofia/x", {"a": "it's"}, "park()"),
        ("sofia/x", {"a": "x}y"}, "park()"),
        ("sofia/x", {"a": "line\nbreak"}, "park()"),
        ("sofia/x", {}, "park() ; evil"),
        ("sofia/x", {}, "park"),
    ],
)
def test_originate_cmd_refuses(dial, variables, app) -> None:
    with pytest.raises(ValueError):
        p.originate_cmd(dial, variables, app)


def test_safe_var_value() -> None:
    assert p.escape_var_value(p.safe_var_value('Joe\'s "Pizza" {x}')) == "Joes\\sPizza\\sx"


def test_audio_fork_start_cmd() -> None:
    cmd = p.audio_fork_start_cmd(U, "ws://127.0.0.1:8090/fork/c1", "mono", 8000, {"callId": U, "rate": 8000})
    assert (
        cmd == f'uuid_audio_fork {U} start ws://127.0.0.1:8090/fork/c1 mono 8k {{"callId":"{U}","rate":8000}}'
    )
    assert p.audio_fork_start_cmd(U, "ws://h/f", "stereo", 16000).endswith(" stereo 16k")
    assert p.audio_fork_start_cmd(U, "ws://h/f", rate=24000).endswith(" 24000")
    for bad in [
        dict(url="ws://h/f x"),
        dict(url="ftp://h/f"),
        dict(url="ws://h/f", mix="quad"),
        dict(url="ws://h/f", rate=11025),
        dict(url="ws://h/f", metadata={"a": "b c"}),
        dict(url="ws://h/f", metadata={"a": "it's"}),
        dict(url="ws://h/f", metadata={"a": "é"}),
        dict(url="ws://h/f", metadata={"a": "x" * 9000}),
    ]:
        with pytest.raises(ValueError):
            p.audio_fork_start_cmd(U, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.audio_fork_start_cmd("not a uuid", "ws://h/f")


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (lambda: p.uuid_kill_cmd(U), f"uuid_kill {U}"),
        (lambda: p.uuid_kill_cmd(U, "NORMAL_CLEARING"), f"uuid_kill {U} NORMAL_CLEARING"),
        (lambda: p.uuid_bridge_cmd(U, "d-1"), f"uuid_bridge {U} d-1"),
        (lambda: p.uuid_broadcast_cmd(U, "/tmp/a.wav"), f"uuid_broadcast {U} /tmp/a.wav aleg"),
        (
            lambda: p.uuid_broadcast_cmd(U, "tone_stream://%(2000,4000,440,480)", "both"),
            f"uuid_broadcast {U} tone_stream://%(2000,4000,440,480) both",
        ),
        (lambda: p.uuid_send_dtmf_cmd(U, "1w2#"), f"uuid_send_dtmf {U} 1w2#"),
        (lambda: p.uuid_send_dtmf_cmd(U, "12", 250), f"uuid_send_dtmf {U} 12@250"),
        (lambda: p.uuid_record_cmd(U, "start", "/r/a.wav"), f"uuid_record {U} start /r/a.wav"),
        (lambda: p.uuid_record_cmd(U, "start", "/r/a.wav", 60), f"uuid_record {U} start /r/a.wav 60"),
        (lambda: p.uuid_record_cmd(U, "stop", "/r/a.wav"), f"uuid_record {U} stop /r/a.wav"),
        (lambda: p.sched_hangup_cmd(U, 14400), f"sched_hangup +14400 {U} ALLOTTED_TIMEOUT"),
        (lambda: p.uuid_exists_cmd(U), f"uuid_exists {U}"),
        (lambda: p.audio_fork_stop_cmd(U), f"uuid_audio_fork {U} stop"),
        (
            lambda: p.audio_fork_stop_cmd(U, {"reason": "done"}),
            f'uuid_audio_fork {U} stop {{"reason":"done"}}',
        ),
        (
            lambda: p.audio_fork_send_text_cmd(U, {"type": "x"}),
            f'uuid_audio_fork {U} send_text {{"type":"x"}}',
        ),
        (lambda: p.uuid_getvar_cmd(U, "hs_call_id"), f"uuid_getvar {U} hs_call_id"),
        (lambda: p.uuid_break_cmd(U, True), f"uuid_break {U} all"),
        (
            lambda: p.event_subscribe_cmd(["mod_audio_fork::connect", "CHANNEL_ANSWER", "CUSTOM", "DTMF"]),
            "event plain CHANNEL_ANSWER DTMF CUSTOM mod_audio_fork::connect",
        ),
        (lambda: p.event_subscribe_cmd(["ALL"], "json"), "event json ALL"),
    ],
)
def test_builders(built, expected) -> None:
    assert built() == expected


@pytest.mark.parametrize(
    "bad",
    [
        lambda: p.uuid_send_dtmf_cmd(U, "12x"),
        lambda: p.uuid_send_dtmf_cmd(U, ""),
        lambda: p.uuid_send_dtmf_cmd(U, "1" * 100),
        lambda: p.uuid_kill_cmd(U, "bad cause"),
        lambda: p.uuid_kill_cmd(U + " evil"),
        lambda: p.uuid_broadcast_cmd(U, "/a b.wav"),
        lambda: p.uuid_broadcast_cmd(U, "/a.wav", "cleg"),
        lambda: p.uuid_record_cmd(U, "pause", "/a.wav"),
        lambda: p.sched_hangup_cmd(U, 0),
        lambda: p.event_subscribe_cmd([]),
        lambda: p.auth_cmd("pw\nevent plain ALL"),
        lambda: p.command_bytes("api status\n\napi evil"),
    ],
)
def test_builders_refuse(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def test_command_bytes() -> None:
    assert p.command_bytes("bgapi status", {"Job-UUID": "j1"}) == b"bgapi status\nJob-UUID: j1\n\n"
    assert p.command_bytes("exit") == b"exit\n\n"
