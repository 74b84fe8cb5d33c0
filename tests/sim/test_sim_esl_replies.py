"""Replay the captured ESL sessions against the stand-in switch: same commands, same reply frames.

Reply frames are compared exactly (headers and body) after replacing UUIDs; a few
replies that describe switch state that cannot match (the capture had live
loopback calls, uptime) are compared in shape only.
"""

from __future__ import annotations

import ast
import re

import pytest
from sim_esl_client import RawEsl, need_captures, parse_frames

from sim.esl_server import SimSwitch

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# loopback endpoints do not exist on the stand-in; these originates are rewritten to a company that answers
LOOPBACK = re.compile(r"loopback/9664/default")


def sent_commands(transcript: str) -> list[bytes]:
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^##### \[\s*[\d.]+\] >>> (b'.*')$", line)
        if m:
            out.append(ast.literal_eval(m.group(1)))
    return out


def captured_replies(name: str) -> tuple[list[bytes], list[tuple]]:
    cap = need_captures()
    cmds = sent_commands((cap / f"{name}.transcript.txt").read_text())
    frames, _ = parse_frames((cap / f"{name}.recv.bin").read_bytes())
    replies = [
        f
        for f in frames
        if not f[0].get("Content-Type", "").startswith("text/event")
        and f[0].get("Content-Type") != "log/data"
    ]
    return cmds, replies[1:]  # drop auth/request


def norm(pairs: list, body: bytes) -> tuple:
    head = "\n".join(f"{n}: {v}" for n, v in pairs).encode()
    return UUID_RE.sub(b"<uuid>", head), UUID_RE.sub(b"<uuid>", body)


SHAPE_ONLY = (
    "api show channels",
    "api show calls",
    "api status",
    "api sofia status",
    "api list_users",
    "api show channels count",
)
SKIP = (
    "loopback/nonexistent",
    "loopback/1234/no_such_context",
    "api originate user/1000 ",
    "api originate user/1000@127.0.0.1 ",
)


@pytest.mark.parametrize("name", ["esl_badauth", "esl_api_replies", "esl_api_replies2", "esl_misc_commands"])
def test_replies_match_capture(name: str, switch: SimSwitch) -> None:
    cmds, replies = captured_replies(name)
    client = RawEsl(switch.port)
    try:
        assert client.next().ctype == "auth/request"
        ri = 0
        for raw in cmds:
            text = raw.decode()
            line = text.split("\n", 1)[0]
            expected = [replies[ri]]
            ri += 1
            if line == "exit" or line.startswith("auth Wrong"):
                expected.append(replies[ri])
                ri += 1
            if any(s in text for s in SKIP):
                continue
            sent = LOOPBACK.sub("sofia/gateway/trunk/15550100102", text)
            client.send(sent)
            for exp in expected:
                got = client.reply()
                want_head, want_body = norm(exp[1], exp[2])
                got_head, got_body = norm(got.pairs, got.raw_body)
                if line.startswith(SHAPE_ONLY) and exp[0].get("Content-Type") == "api/response":
                    assert got_head.split(b"\n")[0] == want_head.split(b"\n")[0], line
                    if line == "api status":
                        assert got_body.split(b"\n")[1] == want_body.split(b"\n")[1]
                        assert got_body.startswith(b"UP 0 years, ")
                    elif "json" in line and not got_body.startswith(b'{"row_count": 0}'):
                        assert got_body.startswith(b'{"row_count":') and not got_body.endswith(b"\n")
                    continue
                assert (got_head, got_body) == (want_head, want_body), line
        if cmds[-1].startswith(b"exit") or cmds[-1].startswith(b"auth Wrong"):
            assert client.closed.wait(5), "the switch must close the socket"
    finally:
        client.close()


def test_command_before_auth_keeps_connection_open(switch: SimSwitch) -> None:
    c = RawEsl(switch.port)
    try:
        assert c.next().ctype == "auth/request"
        assert c.command("api status").outer["Reply-Text"] == "-ERR command not found"
        assert c.command("auth ClueCon").outer["Reply-Text"] == "+OK accepted"
        assert c.api("uuid_exists nope") == "false"
    finally:
        c.close()


def test_empty_show_channels_json_is_exact(esl: RawEsl) -> None:
    assert esl.api("show channels as json") == '{"row_count": 0}\n'
    assert esl.api("show channels").endswith("\n\n0 total.\n")
    assert esl.api("uuid_getvar 00000000-0000-0000-0000-000000000000 uuid") == "-ERR No such channel!\n"
    assert esl.api("hupall") == "+OK hangup all channels with cause MANAGER_REQUEST\n"
    assert esl.api("sofia_contact 1002@127.0.0.1") == "error/user_not_registered"
    assert esl.api("sofia_contact 1000@127.0.0.1") == "sofia/internal/sip:1000@127.0.0.1:5072;transport=udp"


def test_bgapi_generates_job_uuid_and_background_job(esl: RawEsl) -> None:
    assert esl.command("event json BACKGROUND_JOB").outer["Reply-Text"] == "+OK event listener enabled json"
    reply = esl.command("bgapi uuid_exists 00000000-0000-0000-0000-000000000000")
    job = reply.outer["Job-UUID"]
    assert reply.outer["Reply-Text"] == f"+OK Job-UUID: {job}"
    ev = esl.wait_event(lambda e: e.name == "BACKGROUND_JOB")
    assert ev.ctype == "text/event-json"
    assert ev.get("Job-UUID") == job and ev.get("Job-Command") == "uuid_exists"
    assert ev.body == "false"


def test_custom_grammar_swallows_later_names(esl: RawEsl, switch: SimSwitch) -> None:
    esl.command("event plain CUSTOM mod_audio_fork::connect CHANNEL_CREATE")
    esl.command("bgapi originate sofia/gateway/trunk/15550100101 &park()")  # busy company: creates a channel
    msg = esl.command("api uuid_exists x")  # a later reply: everything before it arrived
    assert msg.raw_body == b"false"
    assert not [e for e in esl.events if e.name == "CHANNEL_CREATE"]


def test_filter_drops_events_without_the_header(esl: RawEsl) -> None:
    uuid = "7d0e6a52-1111-4222-8333-944455556666"
    esl.command("event plain ALL")
    assert (
        esl.command(f"filter Unique-ID {uuid}").outer["Reply-Text"]
        == f"+OK filter added. [Unique-ID]=[{uuid}]"
    )
    esl.command(f"bgapi originate {{origination_uuid={uuid}}}sofia/gateway/trunk/15550100101 &park()")
    ev = esl.wait_event(lambda e: e.name == "CHANNEL_DESTROY")
    assert ev.get("Unique-ID") == uuid
    esl.api("uuid_exists x")
    assert not [e for e in esl.events if e.name in ("BACKGROUND_JOB", "API")]
    assert esl.command("filter delete all").outer["Reply-Text"] == "+OK filter deleted. [all][]"


def test_fragmented_writes_are_still_framed() -> None:
    from sim_esl_client import COMPANIES

    sw = SimSwitch(companies_dir=COMPANIES, speed=20, write_mode="fragment", seed=7).start()
    try:
        c = RawEsl(sw.port)
        c.login()
        c.command("event plain ALL")
        c.command("bgapi originate sofia/gateway/trunk/15550100101 &park()\nJob-UUID: j1")
        ev = c.wait_event(lambda e: e.name == "BACKGROUND_JOB")
        assert ev.body == "-ERR USER_BUSY\n"
        conn = next(iter(sw.connections))
        assert conn.writes > len(c.raw) / 97  # written in small pieces
        c.close()
    finally:
        sw.stop()


def test_api_originate_blocks_events_until_its_reply(esl: RawEsl) -> None:
    esl.command("event plain ALL")
    uuid = "3c3c3c3c-1111-4222-8333-444455556666"
    reply = esl.command(f"api originate {{origination_uuid={uuid}}}sofia/gateway/trunk/15550100102 &park()")
    assert reply.raw_body == f"+OK {uuid}\n".encode()
    i = esl.log.index(reply)
    assert not [
        m for m in esl.log[:i] if m.is_event and m.get("Unique-ID") == uuid
    ]  # all queued behind the reply
    esl.command("api uuid_exists x")
    after = [m.name for m in esl.log[i:] if m.is_event and m.get("Unique-ID") == uuid]
    assert after[:3] == ["CHANNEL_OUTGOING", "CHANNEL_STATE", "CHANNEL_CREATE"] and "CHANNEL_PARK" in after
    assert esl.api("hupall NORMAL_CLEARING") == "+OK hangup all channels with cause NORMAL_CLEARING\n"
    hc = esl.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == uuid)
    assert hc.get("Hangup-Cause") == "NORMAL_CLEARING"


def test_sendmsg_execute_and_hangup(esl: RawEsl) -> None:
    esl.command("event plain ALL")
    uuid = "4d4d4d4d-1111-4222-8333-444455556666"
    esl.api(f"originate {{origination_uuid={uuid}}}sofia/gateway/trunk/15550100102 &park()")
    reply = esl.command(
        f"sendmsg {uuid}\ncall-command: execute\nexecute-app-name: playback\n"
        "execute-app-arg: silence_stream://200\nEvent-UUID: app-1"
    )
    assert reply.outer["Reply-Text"] == "+OK"
    done = esl.wait_event(
        lambda m: m.name == "CHANNEL_EXECUTE_COMPLETE" and m.get("Application") == "playback"
    )
    assert done.get("Application-UUID") == "app-1"
    assert (
        esl.command(f"sendmsg {uuid}\ncall-command: hangup\nhangup-cause: USER_BUSY").outer["Reply-Text"]
        == "+OK"
    )
    hc = esl.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == uuid)
    assert hc.get("Hangup-Cause") == "USER_BUSY"


def test_sofia_status_layout_like_the_capture(esl: RawEsl) -> None:
    _, replies = captured_replies("esl_api_replies2")
    captured = next(body.decode() for _, _, body in replies if body.startswith(b"                     Name"))
    ours = esl.api("sofia status")
    assert ours.split("\n")[:2] == captured.split("\n")[:2]
    assert ours.endswith("=" * 97 + "\n2 profiles 1 alias\n")
    assert "external::trunk\tgateway" in ours
    gw = esl.api("sofia status gateway trunk")
    assert "\nName    \ttrunk\n" in gw and "\nStatus  \tUP\n" in gw
    assert esl.api("sofia status gateway nope") == "Invalid Gateway!\n"
