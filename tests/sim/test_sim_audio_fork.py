"""mod_audio_fork on the stand-in switch: the WebSocket client's upgrade, frames, pacing and events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import gevent
import numpy as np
import pytest
from sim_esl_client import RawEsl, WsSink, need_captures

from sim.audio_fork import ForkError, ForkTarget, FrameReader, encode_frame
from sim.company import CompanyCall
from sim.esl_server import SimSwitch
from sim.scenario import AudioRenderer, load_scenario

NUMBER = "15557000"
SCENARIO = {
    "number": "+" + NUMBER,
    "name": "Fork Test Co",
    "ring_seconds": 0.2,
    "outcome": "answer",
    "ivr": {
        "start": "m",
        "nodes": {
            "m": {
                "prompt": [{"file": "queue-periodic-announce.wav"}, {"tone": [700, 1300], "ms": 500}],
                "next": "hold",
            }
        },
    },
    "hold": {"music": {"file": "macroform-cold_day.wav"}, "duration_seconds": 600},
}


@pytest.fixture
def company_dir(tmp_path: Path) -> Path:
    (tmp_path / "fork_co.json").write_text(json.dumps(SCENARIO))
    return tmp_path


def start_call(speed: float, company_dir: Path) -> tuple[SimSwitch, RawEsl, str]:
    sw = SimSwitch(companies_dir=company_dir, phones="", speed=speed).start()
    c = RawEsl(sw.port)
    c.login()
    c.command("event plain ALL")
    uuid = "0a0b0c0d-1111-4222-8333-444455556666"
    dial = f"{{origination_uuid={uuid},ignore_early_media=true}}sofia/gateway/trunk/{NUMBER}"
    c.command(f"bgapi originate {dial} &park()")
    c.wait_event(lambda m: m.name == "CHANNEL_PARK")
    return sw, c, uuid


@pytest.fixture
def call(company_dir: Path) -> Iterator[tuple[SimSwitch, RawEsl, str]]:
    sw, c, uuid = start_call(20, company_dir)
    yield sw, c, uuid
    c.close()
    sw.stop()


def captured_upgrade_header_names() -> list[str]:
    log = (need_captures() / "gateway" / "gw_answer_fork_bridge.ws.frames.log").read_text()
    return [m.group(1) for m in re.finditer(r"req-header ([A-Za-z-]+):", log)]


def test_upgrade_and_first_text_frame_like_freeswitch(call: tuple) -> None:
    sw, c, uuid = call
    sink = WsSink()
    try:
        meta = json.dumps({"callId": uuid}, separators=(",", ":"))
        assert (
            c.api(f"uuid_audio_fork {uuid} start {sink.url('/fork/abc?x=1')} mono 8k {meta}")
            == "+OK Success\n"
        )
        c.wait_event(lambda m: m.get("Event-Subclass") == "mod_audio_fork::connect")
        start = [m for m in c.log if m.name == "MEDIA_BUG_START"]
        assert start and start[0].get("Media-Bug-Function") == "audio_fork"
        sink.wait_frames(10)
        assert sink.request_line == "GET /fork/abc?x=1 HTTP/1.1"
        assert [n for n, _ in sink.headers] == captured_upgrade_header_names()
        h = dict(sink.headers)
        assert h["Host"] == "127.0.0.1" and h["Origin"] == "http://127.0.0.1"
        assert h["Sec-WebSocket-Protocol"] == "audio.drachtio.org"
        assert sink.frames[0][0] == 1 and sink.frames[0][1].decode() == meta
        assert {len(p) for op, p, _ in sink.frames[1:] if op == 2} == {320}
        # a second start on the same bug fails until stop
        assert c.api(f"uuid_audio_fork {uuid} start {sink.url()} mono 8k") == "-ERR Operation Failed\n"
        assert c.api(f'uuid_audio_fork {uuid} send_text {{"type":"dtmf","digit":"5"}}') == "+OK Success\n"
        assert c.api(f'uuid_audio_fork {uuid} stop {{"reason":"done"}}') == "+OK Success\n"
        assert sink.ended.wait(5)
        texts = [p.decode() for op, p, _ in sink.frames if op == 1]
        assert texts[-2:] == ['{"type":"dtmf","digit":"5"}', '{"reason":"done"}']
        assert sink.frames[-1][0] == 8 and sink.close_code == 1000
        assert c.api(f"uuid_audio_fork {uuid} stop") == "-ERR Operation Failed\n"
        c.command("api uuid_exists x")
        assert not [m for m in c.log if m.get("Event-Subclass") == "mod_audio_fork::disconnect"]
        assert [m for m in c.log if m.name == "MEDIA_BUG_STOP"]
    finally:
        sink.stop()


@pytest.mark.parametrize(
    ("mix", "rate", "size"), [("mono", "16k", 640), ("stereo", "16k", 1280), ("mixed", "8k", 320)]
)
def test_frame_sizes(call: tuple, mix: str, rate: str, size: int) -> None:
    sw, c, uuid = call
    sink = WsSink()
    try:
        if mix != "mono":  # stereo/mixed need audio written to the leg (capture af_stereo16k_withwrite)
            assert (
                c.api(f"uuid_broadcast {uuid} tone_stream://%(1000,0,1000);loops=-1 aleg")
                == "+OK Message sent\n"
            )
        assert c.api(f"uuid_audio_fork {uuid} start {sink.url()} {mix} {rate}") == "+OK Success\n"
        sink.wait_frames(5)
        assert {len(p) for op, p, _ in sink.binary()} == {size}
    finally:
        sink.stop()


def test_stereo_on_a_silent_parked_leg_sends_no_audio(call: tuple) -> None:
    sw, c, uuid = call
    sink = WsSink()
    mono = WsSink()
    try:
        c.api(f'uuid_audio_fork {uuid} start {sink.url()} stereo 16k {{"a":1}}')
        c.api(f"uuid_audio_fork {uuid} start {mono.url()} mono 8k monobug")
        mono.wait_frames(30)
        assert sink.connected.is_set() and sink.binary() == []
    finally:
        sink.stop()
        mono.stop()


def test_connect_failed_then_stop_allows_a_new_start(call: tuple) -> None:
    sw, c, uuid = call
    sink = WsSink()
    port = sink.port
    sink.stop()  # nothing listens there any more
    assert c.api(f"uuid_audio_fork {uuid} start ws://127.0.0.1:{port}/ mono 16k {{}}") == "+OK Success\n"
    ev = c.wait_event(lambda m: m.get("Event-Subclass", "").startswith("mod_audio_fork::connect"))
    assert ev.get("Event-Subclass") == "mod_audio_fork::connect_failed"
    assert ev.headers[0] == ("Event-Subclass", "mod_audio_fork::connect_failed")
    assert ev.body == '{"reason":"Unable to connect"}'
    assert ev.get("Unique-ID") == uuid
    assert c.api(f"uuid_audio_fork {uuid} start ws://127.0.0.1:{port}/ mono 16k") == "-ERR Operation Failed\n"
    assert c.api(f"uuid_audio_fork {uuid} stop") == "+OK Success\n"
    assert c.api("uuid_audio_fork 00000000-0000-0000-0000-000000000000 stop") == "-ERR Operation Failed\n"
    assert c.api(f"uuid_audio_fork {uuid} start ws://127.0.0.1:{port}/ bogus 16k") == ""


def test_server_messages_and_close_become_events(call: tuple) -> None:
    sw, c, uuid = call
    sink = WsSink(
        close_after=20,
        send_on_connect=(
            '{"type":"transcription","data":{"text":"hello","final":true}}',
            '{"type":"someOtherType","data":{"x":1}}',
            '{"type":"error","data":{"code":42}}',
        ),
    )
    try:
        c.api(f"uuid_audio_fork {uuid} start {sink.url()} mono 8k")
        tr = c.wait_event(lambda m: m.get("Event-Subclass") == "mod_audio_fork::transcription")
        assert tr.body == '{"text":"hello","final":true}'
        err = c.wait_event(lambda m: m.get("Event-Subclass") == "mod_audio_fork::error")
        assert err.body == '{"code":42}'
        disc = c.wait_event(lambda m: m.get("Event-Subclass") == "mod_audio_fork::disconnect")
        assert disc.body is None
        assert c.api(f'uuid_audio_fork {uuid} send_text {{"late":1}}') == "+OK Success\n"
        assert c.api(f"uuid_audio_fork {uuid} stop") == "+OK Success\n"
    finally:
        sink.stop()


def test_pacing_follows_media_time(company_dir: Path) -> None:
    speed = 4.0
    sw, c, uuid = start_call(speed, company_dir)
    sink = WsSink()
    try:
        c.api(f"uuid_audio_fork {uuid} start {sink.url()} mono 8k")
        sink.wait_frames(101)
        times = [t for _, _, t in sink.binary()[:101]]
        expected = 100 * 0.020 / speed  # 100 intervals of 20 ms of media time
        elapsed = times[-1] - times[0]
        assert expected * 0.7 < elapsed < expected * 1.6 + 0.05, (elapsed, expected)
    finally:
        sink.stop()
        c.close()
        sw.stop()


def _contiguous_in_reference(got: bytes, ref: bytes) -> bool:
    frames = [got[i : i + 320] for i in range(0, len(got), 320)]
    first = next(i for i, f in enumerate(frames) if np.abs(np.frombuffer(f, "<i2")).max() > 500)
    window = b"".join(frames[first : first + 25])
    off = ref.find(window)
    if off < 0 or off % 320:
        return False
    start = off - first * 320
    return start >= 0 and ref[start : start + len(got)] == got


@pytest.mark.parametrize("speed", [10.0, 40.0])
def test_frame_contents_identical_at_any_speed(company_dir: Path, speed: float) -> None:
    sc = load_scenario(company_dir / "fork_co.json")
    company = CompanyCall(sc, AudioRenderer())
    company.answer()
    ref = b"".join(company.next_frame()[0].astype("<i2").tobytes() for _ in range(2000))
    sw, c, uuid = start_call(speed, company_dir)
    sink = WsSink()
    try:
        c.api(f"uuid_audio_fork {uuid} start {sink.url()} mono 8k")
        sink.wait_frames(300)
        got = b"".join(p for _, p, _ in sink.binary()[:300])
        assert _contiguous_in_reference(got, ref)
    finally:
        sink.stop()
        c.close()
        sw.stop()


def test_ws_frame_codec_roundtrip() -> None:
    payload = bytes(range(256)) * 3
    data = encode_frame(2, payload, mask_key=b"\x01\x02\x03\x04")
    r = FrameReader()
    for i in range(0, len(data), 7):
        r.feed(data[i : i + 7])
    assert r.next() == (2, payload)
    assert ForkTarget.parse("ws://h:81/p?q=1") == ForkTarget("h", 81, "/p?q=1")
    assert ForkTarget.parse("http://h") == ForkTarget("h", 80, "/")
    with pytest.raises(ForkError):
        ForkTarget.parse("ftp://h")


def test_pause_resume_and_graceful_shutdown(call: tuple) -> None:
    sw, c, uuid = call
    sink = WsSink()
    try:
        c.api(f"uuid_audio_fork {uuid} start {sink.url()} mono 8k")
        sink.wait_frames(5)
        assert c.api(f"uuid_audio_fork {uuid} pause") == "+OK Success\n"
        fork = sw.channel(uuid).forks["audio_fork"]
        assert fork.paused
        assert c.api(f"uuid_audio_fork {uuid} resume") == "+OK Success\n"
        n = len(sink.binary())
        sink.wait_frames(n + 5)
        assert c.api(f"uuid_audio_fork {uuid} graceful-shutdown") == "+OK Success\n"
        with gevent.Timeout(5):
            while not any(op == 2 and p == b"" for op, p, _ in sink.frames):
                sink.got_frame.clear()
                sink.got_frame.wait()
        assert c.api(f"uuid_audio_fork {uuid} stop") == "+OK Success\n"
        assert sink.ended.wait(5) and sink.close_code == 1000
        assert c.api(f"uuid_audio_fork {uuid} pause") == "-ERR Operation Failed\n"
    finally:
        sink.stop()
