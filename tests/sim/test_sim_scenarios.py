"""Scripted companies and desk phones, end to end over ESL: IVR and DTMF, outcomes, phones, bridge, record."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import gevent.queue
import numpy as np
import pytest
from sim_esl_client import COMPANIES, RawEsl, WsSink

from sim.esl_server import SimSwitch
from sim.phones import PhoneSpecError, parse_phones
from sim.scenario import CompanyDirectory, ScenarioError, load_scenario, validate_scenario

U = "5a5a5a5a-0000-4000-8000-00000000000{}"


def originate(c: RawEsl, target: str, uuid: str, extra: str = "") -> None:
    c.command(f"bgapi originate {{origination_uuid={uuid}{extra}}}{target} &park()\nJob-UUID: job-{uuid}")


def job_body(c: RawEsl, uuid: str) -> str:
    ev = c.wait_event(lambda m: m.name == "BACKGROUND_JOB" and m.get("Job-UUID") == f"job-{uuid}")
    return ev.body or ""


def notes(switch: SimSwitch, uuid: str) -> gevent.queue.Queue:
    q: gevent.queue.Queue = gevent.queue.Queue()
    ch = switch.channel(uuid)
    assert ch is not None and ch.company is not None
    ch.company.listeners.append(q.put)
    for _, what in ch.company.log:
        q.put(what)
    return q


def wait_note(q: gevent.queue.Queue, text: str, timeout: float = 10) -> None:
    with gevent.Timeout(timeout, AssertionError(f"company never did {text!r}")):
        while q.get() != text:
            pass


@pytest.fixture
def c(esl: RawEsl) -> RawEsl:
    esl.command("event plain ALL")
    return esl


def test_ivr_reacts_to_dtmf_1_then_2_and_reaches_hold(c: RawEsl, switch: SimSwitch) -> None:
    uuid = U.format(1)
    originate(c, "sofia/gateway/trunk/15550100100", uuid, ",ignore_early_media=true")
    assert job_body(c, uuid) == f"+OK {uuid}\n"
    q = notes(switch, uuid)
    wait_note(q, "prompt main")
    c.api(f"uuid_send_dtmf {uuid} 1")
    wait_note(q, "menu main -> accounts")
    wait_note(q, "prompt accounts")
    assert c.api(f"uuid_send_dtmf {uuid} 2") == f"+OK {uuid} sent DTMF 2.\n"
    wait_note(q, "menu accounts -> hold")
    wait_note(q, "hold started")
    assert switch.channel(uuid).company.phase == "hold"  # type: ignore[union-attr]
    c.command("api uuid_exists x")
    assert not [m for m in c.log if m.name == "DTMF"]  # a carrier leg shows no DTMF for sent digits


def test_invalid_entry_replays_the_menu(c: RawEsl, switch: SimSwitch) -> None:
    uuid = U.format(2)
    originate(c, "sofia/gateway/trunk/15550100100", uuid, ",ignore_early_media=true")
    job_body(c, uuid)
    q = notes(switch, uuid)
    wait_note(q, "prompt main")
    c.api(f"uuid_send_dtmf {uuid} 9")
    wait_note(q, "invalid 9")
    wait_note(q, "prompt main")


@pytest.mark.parametrize(
    ("number", "extra", "body", "cause"),
    [
        ("15550100101", "", "-ERR USER_BUSY\n", "USER_BUSY"),
        ("15550999", ",ignore_early_media=true", "-ERR UNALLOCATED_NUMBER\n", "UNALLOCATED_NUMBER"),
    ],
)
def test_failed_outcomes(c: RawEsl, number: str, extra: str, body: str, cause: str) -> None:
    uuid = U.format(3)
    originate(c, f"sofia/gateway/trunk/{number}", uuid, extra)
    assert job_body(c, uuid) == body
    hc = c.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == uuid)
    assert hc.get("Hangup-Cause") == cause and hc.get("variable_hangup_cause") == cause


def test_unknown_number_plays_sit_as_early_media(c: RawEsl, switch: SimSwitch) -> None:
    uuid = U.format(4)
    sink = WsSink()
    try:
        originate(c, "sofia/gateway/trunk/15550999", uuid)  # no ignore_early_media: +OK at 183
        assert job_body(c, uuid) == f"+OK {uuid}\n"
        pm = [m for m in c.log if m.name == "CHANNEL_PROGRESS_MEDIA"]
        assert pm and pm[0].get("Answer-State") == "early"
        assert c.api(f"uuid_audio_fork {uuid} start {sink.url()} mono 8k") == "+OK Success\n"
        hc = c.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == uuid)
        assert hc.get("Hangup-Cause") == "UNALLOCATED_NUMBER"
        assert not [m for m in c.log if m.name == "CHANNEL_ANSWER"]
        pcm = np.frombuffer(b"".join(p for _, p, _ in sink.binary()), "<i2").astype(float)
        assert len(pcm) > 8000
        spectrum = np.abs(np.fft.rfft(pcm))
        freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
        band = spectrum[(freqs > 300) & (freqs < 3400)].sum()
        near = sum(spectrum[np.abs(freqs - f) < 15].sum() for f in (913.8, 1370.6, 1776.7))
        assert near > 0.05 * band  # the SIT tones are really there
    finally:
        sink.stop()


def test_no_answer_times_out(c: RawEsl) -> None:
    uuid = U.format(5)
    originate(c, "user/1001@127.0.0.1", uuid, ",originate_timeout=2")
    assert job_body(c, uuid) == "-ERR NO_ANSWER\n"
    assert [m.name for m in c.log if m.get("Unique-ID") == uuid][:3] == [
        "CHANNEL_OUTGOING",
        "CHANNEL_STATE",
        "CHANNEL_CREATE",
    ]


@pytest.mark.parametrize(
    ("ext", "body"), [("1002", "-ERR USER_NOT_REGISTERED\n"), ("9999", "-ERR SUBSCRIBER_ABSENT\n")]
)
def test_desk_phone_not_there_creates_no_channel(c: RawEsl, ext: str, body: str) -> None:
    uuid = U.format(6)
    originate(c, f"user/{ext}@127.0.0.1", uuid)
    assert job_body(c, uuid) == body
    assert not [m for m in c.log if m.get("Unique-ID") == uuid]
    assert c.api(f"originate user/{ext}@127.0.0.1 &park()") == body


def test_bridge_sends_the_agent_to_the_desk_phone(c: RawEsl, switch: SimSwitch, tmp_path: Path) -> None:
    a, d = U.format(7), U.format(8)
    originate(c, "sofia/gateway/trunk/15550100102", a, ",ignore_early_media=true,hs_call_id=call-7")
    assert job_body(c, a) == f"+OK {a}\n"
    assert c.api(f"uuid_getvar {a} hs_call_id") == "call-7"
    assert c.api(f"uuid_setvar {a} hs_note hello") == "+OK\n"
    assert c.api(f"uuid_setvar {a} hs_gone x") == "+OK\n" and c.api(f"uuid_getvar {a} hs_gone") == "x"
    assert c.api(f"uuid_setvar {a} hs_gone") == "+OK\n" and c.api(f"uuid_getvar {a} hs_gone") == "_undef_"
    rec = tmp_path / "rec.wav"
    assert c.api(f"uuid_record {a} start {rec}") == "+OK Success\n"
    q = notes(switch, a)
    wait_note(q, "agent greeting")
    # the agent hears our "connecting you" prompt and waits for the transfer
    assert c.api(f"uuid_broadcast {a} tone_stream://%(800,0,600) aleg") == "+OK Message sent\n"
    wait_note(q, "agent waits for the transfer")
    originate(c, "user/1000@127.0.0.1", d, ",origination_caller_id_name=Direct\\sAgent\\sInc")
    assert job_body(c, d) == f"+OK {d}\n"
    create = [m for m in c.log if m.name == "CHANNEL_CREATE" and m.get("Unique-ID") == d][0]
    assert create.get("Caller-Caller-ID-Name") == "Direct Agent Inc"
    assert c.api(f"uuid_bridge {a} {d}") == f"+OK {d}\n"
    br = c.wait_event(lambda m: m.name == "CHANNEL_BRIDGE")
    assert (br.get("Bridge-A-Unique-ID"), br.get("Bridge-B-Unique-ID")) == (a, d)
    assert br.get("variable_hs_note") == "hello"
    phone = switch.phone("1000")
    assert phone.bridged_event.wait(5) and phone.bridged_to == a
    wait_note(q, "agent talks to the user")
    assert phone.wait_heard(1.5, timeout=10)
    assert np.abs(phone.heard_pcm()).max() > 1000  # speech, not silence
    assert c.api(f"uuid_record {a} stop {rec}") == "+OK Success\n"
    rstop = c.wait_event(lambda m: m.name == "RECORD_STOP")
    assert rstop.headers[-1] == ("Record-File-Path", str(rec)) and rstop.get("Unique-ID") == a
    with wave.open(str(rec)) as w:
        assert w.getframerate() == 8000 and w.getnframes() > 8000
    assert c.api(f"uuid_kill {a}") == "+OK\n"
    c.wait_event(lambda m: m.name == "CHANNEL_DESTROY" and m.get("Unique-ID") == d)  # the desk leg goes too
    assert c.api(f"uuid_exists {d}") == "false"


def test_agent_gives_up_when_nobody_answers(c: RawEsl, switch: SimSwitch) -> None:
    a = U.format(9)
    originate(c, "sofia/gateway/trunk/15550100102", a, ",ignore_early_media=true")
    job_body(c, a)
    q = notes(switch, a)
    wait_note(q, "agent reprompt")
    hangup = c.wait_event(lambda m: m.name == "CHANNEL_HANGUP" and m.get("Unique-ID") == a)
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert hangup.get("variable_sip_term_status") == "200"  # the far end sent BYE
    hc = c.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == a)
    assert hc.get("variable_sip_hangup_disposition") == "recv_bye"


def test_desk_phone_presses_its_digit_after_the_whisper(c: RawEsl, switch: SimSwitch) -> None:
    d = U.format(0)
    originate(c, "user/1003@127.0.0.1", d)
    assert job_body(c, d) == f"+OK {d}\n"
    c.api(f"uuid_broadcast {d} silence_stream://300 aleg")
    stop = c.wait_event(lambda m: m.name == "PLAYBACK_STOP" and m.get("Unique-ID") == d)
    dtmf = c.wait_event(lambda m: m.name == "DTMF" and m.get("Unique-ID") == d)
    assert dtmf.get("DTMF-Digit") == "1" and dtmf.get("DTMF-Source") == "RTP"
    assert c.log.index(stop) < c.log.index(dtmf)
    assert not [n for n, _ in dtmf.headers if n.startswith("variable_")]


def test_sched_hangup_and_json_events(esl: RawEsl) -> None:
    esl.command("event json ALL")
    a = U.format(1)
    originate(esl, "sofia/gateway/trunk/15550100102", a, ",ignore_early_media=true")
    job_body(esl, a)
    assert esl.api(f"sched_hangup +1 {a} ALLOTTED_TIMEOUT") == "+OK\n"
    hc = esl.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE")
    assert hc.ctype == "text/event-json"
    assert hc.raw_body.count(b'"Hangup-Cause":"ALLOTTED_TIMEOUT"') == 2


# -- scenario files and phone specs -----------------------------------------------------------


def test_sample_companies_validate() -> None:
    d = CompanyDirectory(COMPANIES)
    assert {f"+155501001{i:02d}" for i in range(5)} <= set(d.by_number)
    acme = d.lookup("15550100100")
    assert acme is not None and acme.voice("agent") != acme.voice("ivr")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"number": "555", "name": "x", "outcome": "answer"}, "at number"),
        ({"number": "+15551234", "name": "x", "outcome": "maybe"}, "at outcome"),
        ({"number": "+15551234", "name": "x", "outcome": "answer", "ring_seconds": -1}, "at ring_seconds"),
        (
            {
                "number": "+15551234",
                "name": "x",
                "outcome": "answer",
                "ivr": {"start": "a", "nodes": {"a": {"prompt": {"say": "hi"}, "choices": {"1": "nowhere"}}}},
            },
            "nowhere",
        ),
        (
            {
                "number": "+15551234",
                "name": "x",
                "outcome": "answer",
                "agent": {"greeting": {"file": "/no/such/file.wav"}},
            },
            "audio file not found",
        ),
    ],
)
def test_bad_scenarios_fail_clearly(data: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        validate_scenario(data, "bad.json")
    assert "bad.json" in str(err.value) and message in str(err.value)


def test_bad_scenario_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ScenarioError, match="broken.json: not valid JSON"):
        load_scenario(tmp_path / "broken.json")
    with pytest.raises(ScenarioError, match="broken.json"):
        SimSwitch(companies_dir=tmp_path)
    with pytest.raises(ScenarioError, match="not found"):
        CompanyDirectory(tmp_path / "missing")
    good = {"number": "+15551234", "name": "x", "outcome": "busy"}
    (tmp_path / "broken.json").unlink()
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(good))
    with pytest.raises(ScenarioError, match="already used"):
        CompanyDirectory(tmp_path)


def test_phone_specs() -> None:
    phones = parse_phones("1000:answer:2,1001:noanswer,1002:unregistered,1003:answer:0.5:dtmf=1#:hangup=30")
    assert phones["1000"].answer_after == 2 and phones["1003"].dtmf == "1#"
    assert phones["1003"].hangup_after == 30 and phones["1000"].hangup_after is None
    assert not phones["1002"].registered and phones["1001"].port == 5073
    for bad in (
        "abc:answer:1",
        "1000:maybe",
        "1000:answer",
        "1000:answer:x",
        "1000:answer:1:dtmf=9x",
        "1000:noanswer,1000:noanswer",
        "1000:noanswer:color=red",
    ):
        with pytest.raises(PhoneSpecError):
            parse_phones(bad)


def test_parked_desk_leg_killed_like_the_captured_sip_leg(c: RawEsl) -> None:
    from sim_esl_client import need_captures, parse_frames, parse_plain_event

    frames, _ = parse_frames((need_captures() / "sip_call" / "esl_sip_call.recv.bin").read_bytes())
    want = []
    for n in [44, *range(49, 58)]:
        headers, _ = parse_plain_event(frames[n - 1][2])
        want.append([name for name, _ in headers])
    d = U.format(0)
    originate(c, "user/1000@127.0.0.1", d)
    assert job_body(c, d) == f"+OK {d}\n"
    assert c.api(f"uuid_kill {d}") == "+OK\n"
    c.wait_event(lambda m: m.name == "CHANNEL_STATE" and m.get("Channel-State") == "CS_DESTROY")
    got = [m for m in c.log if m.is_event and m.get("Unique-ID") == d]
    got = got[[m.name for m in got].index("CHANNEL_HANGUP") :]
    assert [m.name for m in got] == [
        "CHANNEL_HANGUP",
        "CHANNEL_UNPARK",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_STATE",
        "CHANNEL_CALLSTATE",
        "PRESENCE_IN",
        "CHANNEL_STATE",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_DESTROY",
        "CHANNEL_STATE",
    ]
    # channel block and event-specific headers as captured (variables are this call's own)
    for g, w in zip(got, want, strict=True):
        assert [n for n, _ in g.headers if not n.startswith("variable_")] == [
            n for n in w if not n.startswith("variable_")
        ]


def test_uuid_break_stops_a_prompt(c: RawEsl) -> None:
    a = U.format(2)
    originate(c, "sofia/gateway/trunk/15550100102", a, ",ignore_early_media=true")
    job_body(c, a)
    assert c.api(f"uuid_break {a} all") == "+OK\n"  # nothing playing: still +OK
    c.api(f"uuid_broadcast {a} tone_stream://%(1000,0,440);loops=20 aleg")
    c.wait_event(lambda m: m.name == "PLAYBACK_START" and m.get("Unique-ID") == a)
    assert c.api(f"uuid_break {a}") == "+OK\n"
    stop = c.wait_event(lambda m: m.name == "PLAYBACK_STOP" and m.get("Unique-ID") == a)
    assert stop.get("Playback-Status") == "break"
    assert c.api("uuid_break 00000000-0000-0000-0000-000000000000") == "-ERR No such channel!\n"
    assert stop.get("Playback-File-Type") == "tone_stream"
    c.api(f"uuid_broadcast {a} /usr/share/asterisk/sounds/en/beep.wav aleg")
    start = c.wait_event(lambda m: m.name == "PLAYBACK_START" and m.get("Unique-ID") == a)
    assert start.get("Playback-File-Path") == "/usr/share/asterisk/sounds/en/beep.wav"
    assert "Playback-File-Type" not in dict(start.headers)
    done = c.wait_event(lambda m: m.name == "PLAYBACK_STOP" and m.get("Unique-ID") == a)
    assert done.get("Playback-Status") == "done"


def test_desk_user_hangs_up_on_their_own(tmp_path: Path) -> None:
    sw = SimSwitch(companies_dir=COMPANIES, phones="1000:answer:0.2:hangup=2", speed=20).start()
    try:
        c = RawEsl(sw.port)
        c.login()
        c.command("event plain ALL")
        d = U.format(3)
        originate(c, "user/1000@127.0.0.1", d)
        assert job_body(c, d) == f"+OK {d}\n"
        hc = c.wait_event(lambda m: m.name == "CHANNEL_HANGUP_COMPLETE" and m.get("Unique-ID") == d)
        assert hc.get("Hangup-Cause") == "NORMAL_CLEARING"
        assert hc.get("variable_sip_hangup_disposition") == "recv_bye"
        c.close()
    finally:
        sw.stop()
