"""Replay the captured gateway calls (fs-captures/gateway/) against the stand-in switch.

For each case the same commands are sent (gateway renamed `company` -> `trunk`, the
same origination_uuid and Job-UUID), with a company scenario playing the captured
far end.  The events of the a-leg (and desk leg) must come in the captured order,
with BACKGROUND_JOB where the capture has it, and every event must carry the
captured header NAMES in the captured order (values that identify a call differ).
The captured far-end leg (the switch calling itself) has no counterpart on a real
carrier and is ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sim_esl_client import Msg, RawEsl, WsSink, need_captures, parse_frames, parse_plain_event

from sim.esl_server import SimSwitch

CASES: dict[str, tuple[str, str, str, dict[str, Any], str]] = {
    # case: (a-leg uuid, job uuid, number, scenario overrides, originate extra vars)
    "gw_answer_fork_bridge": (
        "62fe4c81-2fa6-44a6-a85b-fe1524d7db77",
        "df1ed141-94ab-4e8b-af8e-18f026c2ca58",
        "5550100",
        {"outcome": "answer", "ring_seconds": 1},
        "",
    ),
    "gw_ivr_dtmf": (
        "fd4cb14c-3d86-42de-8164-9ba6c354c592",
        "c763fd5c-2e65-4438-93a8-672b52d51139",
        "5550200",
        {"outcome": "answer", "ring_seconds": 1},
        "",
    ),
    "gw_far_end_hangup_during_fork": (
        "af9b1fae-06cf-457b-9842-180d17775f43",
        "9c1e604b-056d-45e1-a7ef-4153c4e3c816",
        "5559100",
        {
            "outcome": "answer",
            "ring_seconds": 1,
            "ivr": {"start": "m", "nodes": {"m": {"prompt": {"silence": 18}, "next": "hangup"}}},
        },
        "",
    ),
    "gw_busy": (
        "d143b5c4-7508-43ea-87cd-25e182574ed7",
        "14b330fb-db5b-41f2-80ad-7c312864cc1f",
        "5550486",
        {"outcome": "busy"},
        "",
    ),
    "gw_not_found": (
        "1cc71902-eb6c-4d28-8d90-3315e16fd892",
        "a0ab6c4e-c686-4f37-a751-8bc66fca0dfc",
        "5550404",
        {"outcome": "sit"},
        "",
    ),
    "gw_unavailable": (
        "acf33848-cb58-4c96-b595-cd752647091e",
        "be7e7cd7-2169-49b3-bd22-3851020f8b79",
        "5550503",
        {"outcome": "unavailable"},
        "",
    ),
    "gw_no_answer": (
        "8ed29ec4-30fe-422b-9a85-33d6d0fa6438",
        "89fba3c8-3ef2-4fd5-8984-5d8ee896029f",
        "5550480",
        {"outcome": "no_answer"},
        ",originate_timeout=5",
    ),
    "gw_early_media_no_answer": (
        "f883abb1-416b-4193-b805-2c2698d08e33",
        "42e4bac2-43f8-4876-87f5-e5cae0f4e9c2",
        "5550183",
        {"outcome": "no_answer", "early_media": {"tone": [440, 480], "ms": 2000}},
        ",originate_timeout=8",
    ),
}
DESK = ("0fc9eff5-1972-4828-9954-3281caed1276", "852dad8c-178a-42ee-91c4-fb72e3dad204")


def leg_view(
    msgs: list[tuple[list[tuple[str, str]], str | None]], uuids: dict[str, str], jobs: dict[str, str]
) -> list[tuple]:
    """(role, event name, subclass, header names) for the legs we care about, BACKGROUND_JOB included."""
    out = []
    for headers, body in msgs:
        d = dict(headers)
        name = d.get("Event-Name", "")
        if name == "BACKGROUND_JOB" and d.get("Job-UUID") in jobs:
            role = jobs[d["Job-UUID"]]
            out.append((role, name, (body or "").split(" ")[0], tuple(n for n, _ in headers)))
        elif d.get("Unique-ID") in uuids and name not in ("HEARTBEAT", "RE_SCHEDULE", "API"):
            out.append(
                (uuids[d["Unique-ID"]], name, d.get("Event-Subclass", ""), tuple(n for n, _ in headers))
            )
    return out


def captured(case: str, uuids: dict[str, str], jobs: dict[str, str]) -> list[tuple]:
    data = (need_captures() / "gateway" / f"{case}.recv.bin").read_bytes()
    frames, _ = parse_frames(data)
    msgs = [
        parse_plain_event(body)
        for outer, _, body in frames
        if outer.get("Content-Type") == "text/event-plain"
    ]
    return leg_view(msgs, uuids, jobs)


def simulated(client: RawEsl, uuids: dict[str, str], jobs: dict[str, str]) -> list[tuple]:
    return leg_view([(m.headers, m.body) for m in client.log if m.is_event], uuids, jobs)


def is_ev(name: str, uuid: str, **headers: str) -> Callable[[Msg], bool]:
    def pred(m: Msg) -> bool:
        return (
            m.name == name and m.get("Unique-ID") == uuid and all(m.get(k) == v for k, v in headers.items())
        )

    return pred


def company(tmp: Path, number: str, overrides: dict) -> Path:
    d = {
        "number": "+" + number,
        "name": f"Capture {number}",
        "outcome": "answer",
        "hold": {"music": {"silence": 1}, "duration_seconds": 600},
    }
    d.update(overrides)
    (tmp / f"c{number}.json").write_text(json.dumps(d))
    return tmp


def compare(got: list[tuple], want: list[tuple]) -> None:
    assert len(want) >= 9 and any(w[1] == "BACKGROUND_JOB" for w in want)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[3] == w[3], f"header names differ in {w[0]} {w[1]} {w[2]}"


@pytest.mark.parametrize("case", list(CASES))
def test_gateway_case_matches_capture(case: str, tmp_path: Path) -> None:
    need_captures()
    u, job, number, overrides, extra = CASES[case]
    sw = SimSwitch(
        companies_dir=company(tmp_path, number, overrides), phones="1000:answer:0.5", speed=20
    ).start()
    sink = WsSink()
    client = RawEsl(sw.port)
    uuids, jobs = {u: "a"}, {job: "a"}
    try:
        client.login()
        client.command("event plain ALL")
        client.command(
            f"bgapi originate {{origination_uuid={u},ignore_early_media=true{extra}}}"
            f"sofia/gateway/trunk/{number} &park()\nJob-UUID: {job}"
        )
        if overrides["outcome"] != "answer":
            client.wait_event(is_ev("CHANNEL_STATE", u, **{"Channel-State": "CS_DESTROY"}))
        else:
            client.wait_event(is_ev("CHANNEL_PARK", u))
            meta = json.dumps({"callId": u}, separators=(",", ":"))
            assert client.api(f"uuid_audio_fork {u} start {sink.url()} mono 8k {meta}") == "+OK Success\n"
            client.wait_event(lambda m: m.get("Event-Subclass") == "mod_audio_fork::connect")
            if case == "gw_answer_fork_bridge":
                d, djob = DESK
                uuids[d], jobs[djob] = "b", "b"
                client.command(
                    f"bgapi originate {{origination_uuid={d}}}user/1000@127.0.0.1 &park()\nJob-UUID: {djob}"
                )
                client.wait_event(is_ev("CHANNEL_PARK", d))
                assert client.api(f"uuid_bridge {u} {d}") == f"+OK {d}\n"
                client.wait_event(is_ev("CALL_UPDATE", d))
                assert client.api(f"uuid_kill {u}") == "+OK\n"
                client.wait_event(is_ev("CHANNEL_STATE", u, **{"Channel-State": "CS_DESTROY"}))
            elif case == "gw_ivr_dtmf":
                assert client.api(f"uuid_send_dtmf {u} 1") == f"+OK {u} sent DTMF 1.\n"
                assert client.api(f"uuid_kill {u}") == "+OK\n"
                client.wait_event(is_ev("CHANNEL_STATE", u, **{"Channel-State": "CS_DESTROY"}))
            else:
                client.wait_event(is_ev("CHANNEL_STATE", u, **{"Channel-State": "CS_DESTROY"}))
                assert client.api(f"uuid_audio_fork {u} stop") == "-ERR Operation Failed\n"
                assert client.api(f"uuid_exists {u}") == "false"
        client.command("api uuid_exists x")  # a reply after the last event: everything has arrived
        got = simulated(client, uuids, jobs)
        want = captured(case, uuids, jobs)
        compare(got, want)
        hc = [m for m in client.log if m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == u][0]
        assert len([1 for n, _ in hc.headers if n == "Hangup-Cause"]) == 2
        if overrides["outcome"] == "answer":  # CDR variables are this call's, not the capture's
            assert hc.get("variable_answer_uepoch") == hc.get("Caller-Channel-Answered-Time") != "0"
            assert 0 < int(hc.get("variable_billusec")) < int(hc.get("variable_uduration")) < 60_000_000
        if case == "gw_answer_fork_bridge":
            assert sink.ended.wait(5) and sink.close_code == 1000
            assert sw.phone("1000").bridged_to == u
    finally:
        client.close()
        sink.stop()
        sw.stop()


def test_focused_subscriber_gets_only_its_types(tmp_path: Path) -> None:
    """gw_answer_fork_bridge_focused: the same call seen with a list of event types."""
    cap = need_captures() / "gateway"
    u, job, number, overrides, _ = CASES["gw_answer_fork_bridge"]
    d, djob = DESK
    transcript = (cap / "gw_answer_fork_bridge_focused.transcript.txt").read_text()
    sub = re.search(r">>> b'(event plain [^\\]*)", transcript)
    assert sub
    sw = SimSwitch(
        companies_dir=company(tmp_path, number, overrides), phones="1000:answer:0.5", speed=20
    ).start()
    sink = WsSink()
    client = RawEsl(sw.port)
    try:
        client.login()
        assert client.command(sub.group(1)).outer["Reply-Text"] == "+OK event listener enabled plain"
        client.command(
            f"bgapi originate {{origination_uuid={u},ignore_early_media=true}}"
            f"sofia/gateway/trunk/{number} &park()\nJob-UUID: {job}"
        )
        client.wait_event(is_ev("CHANNEL_ANSWER", u))
        client.wait_event(lambda m: m.name == "BACKGROUND_JOB")
        client.api(f'uuid_audio_fork {u} start {sink.url()} mono 8k {{"callId":"{u}"}}')
        client.wait_event(lambda m: m.get("Event-Subclass") == "mod_audio_fork::connect")
        client.command(
            f"bgapi originate {{origination_uuid={d}}}user/1000@127.0.0.1 &park()\nJob-UUID: {djob}"
        )
        client.wait_event(lambda m: m.name == "BACKGROUND_JOB" and m.get("Job-UUID") == djob)
        client.api(f"uuid_bridge {u} {d}")
        client.wait_event(is_ev("CHANNEL_BRIDGE", u))
        client.api(f"uuid_kill {u}")
        client.wait_event(is_ev("CHANNEL_HANGUP_COMPLETE", u))
        client.command("api uuid_exists x")
        names = [(m.name, m.get("Unique-ID")[:4]) for m in client.log if m.is_event]
        assert names == [
            ("CHANNEL_CREATE", u[:4]),
            ("CHANNEL_PROGRESS", u[:4]),
            ("CHANNEL_ANSWER", u[:4]),
            ("BACKGROUND_JOB", ""),
            ("CUSTOM", u[:4]),
            ("CHANNEL_CREATE", d[:4]),
            ("CHANNEL_PROGRESS", d[:4]),
            ("CHANNEL_ANSWER", d[:4]),
            ("BACKGROUND_JOB", ""),
            ("CHANNEL_BRIDGE", u[:4]),
            ("CHANNEL_HANGUP", u[:4]),
            ("CHANNEL_HANGUP", d[:4]),
            ("CHANNEL_HANGUP_COMPLETE", d[:4]),
            ("CHANNEL_UNBRIDGE", u[:4]),
            ("CHANNEL_HANGUP_COMPLETE", u[:4]),
        ]
    finally:
        client.close()
        sink.stop()
        sw.stop()
