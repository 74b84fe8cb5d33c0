"""sim.wire: URL encoding, event serialisation and command framing, checked against captured bytes."""

from __future__ import annotations

import urllib.parse

import pytest
from sim_esl_client import need_captures, parse_frames

from sim import wire


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("::1", "%3A%3A1"),
        ("2025-03-04 14:22:07", "2025-03-04%2014%3A22%3A07"),
        ("sofia::register", "sofia%3A%3Aregister"),
        ("&park()", "%26park()"),
        ("{a=b}", "%7Ba%3Db%7D"),
        ("line\nbreak", "line%0Abreak"),
        ("é", "%C3%A9"),
        ("%(2000,4000,440,480)", "%25(2000,4000,440,480)"),
        ("100%AB", "100%AB"),  # an existing %XX escape is kept (double_encode false)
        ("!$'()*,-./_~", "!$'()*,-./_~"),
        ('a"b|c^d`e', "a%22b%7Cc%5Ed%60e"),
    ],
)
def test_url_encode_matches_freeswitch(value: str, encoded: str) -> None:
    assert wire.url_encode(value) == encoded


def _captured_events(name: str) -> list[bytes]:
    data = (need_captures() / name).read_bytes()
    frames, rest = parse_frames(data)
    assert rest == b""
    return [body for outer, _, body in frames if outer.get("Content-Type") == "text/event-plain"]


@pytest.mark.parametrize(
    "capture",
    [
        "esl_api_replies.recv.bin",
        "gateway/gw_answer_fork_bridge.recv.bin",
        "audio_fork/esl_audiofork_stereo16k_parked.recv.bin",
    ],
)
def test_plain_serialisation_reproduces_captured_events_byte_for_byte(capture: str) -> None:
    bodies = _captured_events(capture)
    assert bodies
    for body in bodies:
        text = body.decode()
        k = text.find("\n\n")
        head, rest = text[:k], text[k + 2 :]
        headers: list[tuple[str, str]] = []
        inner = None
        for line in head.split("\n"):
            n, v = line.split(": ", 1)
            if n == "Content-Length" and headers:
                inner = int(v)
                continue
            headers.append((n, urllib.parse.unquote(v)))
        again = wire.serialize_plain(headers, rest[:inner] if inner is not None else None)
        assert again == body


def test_event_frame_outer_headers_content_length_first() -> None:
    frame = wire.event_frame("plain", [("Event-Name", "HEARTBEAT")])
    assert frame.startswith(
        b"Content-Length: 23\nContent-Type: text/event-plain\n\nEvent-Name: HEARTBEAT\n\n"
    )
    js = wire.event_frame(
        "json", [("Event-Name", "BACKGROUND_JOB"), ("Hangup-Cause", "A"), ("Hangup-Cause", "A")], "+OK x\n"
    )
    payload = js.split(b"\n\n", 1)[1]
    assert payload == (
        b'{"Event-Name":"BACKGROUND_JOB","Hangup-Cause":"A","Hangup-Cause":"A",'
        b'"Content-Length":"6","_body":"+OK x\\n"}'
    )


def test_replies_byte_exact() -> None:
    assert wire.auth_request() == b"Content-Type: auth/request\n\n"
    assert wire.command_reply("+OK accepted") == b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
    assert wire.command_reply("+OK Job-UUID: x", [("Job-UUID", "x")]) == (
        b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: x\nJob-UUID: x\n\n"
    )
    assert wire.api_response("false") == b"Content-Type: api/response\nContent-Length: 5\n\nfalse"
    assert wire.disconnect_notice() == (
        b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
        b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    )


STREAM = (
    b"\n\nauth ClueCon\n\nbgapi originate x &park()\nJob-UUID: 1234\n\n"
    b"sendmsg u\r\ncall-command: execute\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    b"exit\n\n"
)


@pytest.mark.parametrize("step", [1, 7, len(STREAM)])
def test_command_parser_any_split(step: int) -> None:
    p = wire.CommandParser()
    got = []
    for i in range(0, len(STREAM), step):
        p.feed(STREAM[i : i + step])
        while (cmd := p.next_command()) is not None:
            got.append(cmd)
    assert [c.line for c in got] == ["auth ClueCon", "bgapi originate x &park()", "sendmsg u", "exit"]
    assert got[1].headers == {"Job-UUID": "1234"}
    assert got[2].headers["call-command"] == "execute"
    assert got[2].body == b"hello"


def test_command_parser_rejects_bad_length() -> None:
    p = wire.CommandParser()
    p.feed(b"sendmsg u\nContent-Length: -4\n\n")
    with pytest.raises(wire.ProtocolError):
        p.next_command()


def test_heartbeat_has_the_captured_header_names() -> None:
    from sim_esl_client import parse_plain_event

    from sim.events import EventFactory

    frames, _ = parse_frames((need_captures() / "gateway" / "gw_ivr_dtmf.recv.bin").read_bytes())
    want = [n for n, _ in parse_plain_event(frames[65][2])[0]]
    ev = EventFactory("core-uuid").heartbeat(3723.5, 2, 17)
    assert [n for n, _ in ev.headers] == want
    assert (
        ev.get("Up-Time")
        == "0 years, 0 days, 1 hours, 2 minutes, 3 seconds, 500 milliseconds, 0 microseconds"
    )
    assert ev.get("Uptime-msec") == "3723500" and ev.get("Session-Count") == "2"


def test_committed_templates_are_built_from_the_captures() -> None:
    import json

    from sim.capture_templates import build
    from sim.events import TEMPLATES_PATH

    built = json.loads(json.dumps(build(need_captures()), ensure_ascii=False))
    assert built == json.loads(TEMPLATES_PATH.read_text())


def _url_encode_reference(value: str) -> str:
    """switch_url_encode_opt byte by byte, as the C code reads (the implementation uses one regex)."""
    raw, out = value.encode("utf-8"), []
    for i, b in enumerate(raw):
        kept_escape = b == 0x25 and all(
            j < len(raw) and chr(raw[j]) in "0123456789ABCDEFabcdef" for j in (i + 1, i + 2)
        )
        if kept_escape or (0x20 < b < 0x7F and chr(b) not in '#%&+:;<=>?@[\\]^`{|}"'):
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def test_url_encode_agrees_with_the_byte_by_byte_rule() -> None:
    import random

    rng = random.Random(7)
    alphabet = [chr(i) for i in range(0x80)] + ["é", "€", "%", "%4", "%4F", "%zz"]
    for _ in range(20000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert wire.url_encode(value) == _url_encode_reference(value), repr(value)
