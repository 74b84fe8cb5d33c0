"""End to end: stored-flow features beyond DTMF - SPEAK through TTS, recording, retries."""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from e2e_env import assert_no_channels

from sim.demo import Stack
from worker import db, tts
from worker.esl import EslClient

pytestmark = pytest.mark.e2e

ACCOUNT_DESK = "+15550100500"  # "please say your account number", then hold, then an agent
ACCOUNT_FLOW = [{"type": "SPEAK", "say": "account_number"}, {"type": "HOLD"}, {"type": "TRANSFER"}]


class Playbacks:
    """Every PLAYBACK_START/STOP the switch announces, seen from an ESL connection of our own."""

    def __init__(self, stack: Stack) -> None:
        self.events: list[tuple[str, str, str, str]] = []  # (name, uuid, path, status)
        self.changed = threading.Event()
        self.client = EslClient("127.0.0.1", stack.esl_port, stack.esl_password, reconnect=False)
        self.client.on_event(self._on)
        self.client.connect()

    def _on(self, ev) -> None:
        if ev.name in ("PLAYBACK_START", "PLAYBACK_STOP"):
            self.events.append((ev.name, ev.get("Unique-ID", ""), ev.get("Playback-File-Path", ""),
                                ev.get("Playback-Status", "")))
            self.changed.set()

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def playbacks(stack: Stack) -> Iterator[Playbacks]:
    p = Playbacks(stack)
    try:
        yield p
    finally:
        p.close()


def _row(stack: Stack, call_id: str) -> db.Call:
    db.init_db(stack.database_url)
    with db.database.connection_context():
        return db.Call.get_by_id(call_id)


def _hang_up(stack: Stack, call_id: str) -> dict:
    stack.esl_api(f"uuid_kill {_row(stack, call_id).company_uuid}")
    final = stack.wait_final(call_id, timeout=30)
    assert_no_channels(stack)
    return final


def test_speak_step_says_the_account_number_with_tts(stack: Stack, playbacks: Playbacks):
    stack.seed(ACCOUNT_DESK, ACCOUNT_FLOW, flow_name="E2E Account Desk")
    call_id = stack.place_call({"number": ACCOUNT_DESK, "intent": "close my account", "transfer_to": "1000",
                                "options": {"account_number": "4821"}})
    call = stack.wait_status(call_id, {"transferred"} | set(db.FINAL_STATUSES), timeout=60)
    assert call["status"] == "transferred", call
    speak = [e["data"] for e in stack.timeline(call_id) if e["type"] == "ivr.speak"]
    assert speak == [{"action": "speak", "text": "***", "step": 0}], speak   # a secret: masked
    # The very WAV worker.tts renders for the spoken digits was played into the company's leg, to the end.
    expected = tts.synthesize(tts.spoken_digits("4821"), rate=8000,
                              cache_dir=Path(stack.extra_env["RECORDINGS_DIR"]) / "tts-expected")
    company = _row(stack, call_id).company_uuid
    played = [(n, p, s) for n, u, p, s in playbacks.events if u == company and p.endswith(".wav")]
    tts_paths = [p for n, p, _ in played if n == "PLAYBACK_START" and Path(p).parent.name == "tts"]
    assert len(tts_paths) == 1, played
    assert Path(tts_paths[0]).name == Path(expected).name   # same text, voice, rate -> same cache key
    with wave.open(tts_paths[0]) as got, wave.open(expected) as want:   # (sox dithers: not byte-equal)
        assert (got.getframerate(), got.getnframes()) == (8000, want.getnframes())
        assert got.getnframes() > 8000   # four digits take more than a second to say
    assert ("PLAYBACK_STOP", tts_paths[0], "done") in played
    assert "4821" not in Path(tts_paths[0]).name
    _hang_up(stack, call_id)
    _assert_recording(stack, call_id)


def _assert_recording(stack: Stack, call_id: str) -> None:
    """RECORDINGS_DIR/YYYY/MM/DD/<call_id>.wav on the call record: a real WAV with audio in it."""
    row = _row(stack, call_id)
    path = Path(row.recording_path)
    day = row.answered_at
    assert path == Path(stack.extra_env["RECORDINGS_DIR"]) / f"{day:%Y/%m/%d}" / f"{call_id}.wav", path
    assert path.is_file(), path
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert w.getnframes() > 2 * w.getframerate()   # seconds of the call, not an empty file
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 100   # speech and music, not silence
    assert "call.recording" in [e["type"] for e in stack.timeline(call_id)]


BUSY_ONCE = "+15550100600"     # busy on the first dial, then answers (scenario `attempts`)
IMPATIENT = "+15550100200"     # the agent hangs up soon after "connecting you"


def test_busy_then_answer_is_retried_with_backoff(stack: Stack):
    call_id = stack.place_call({"number": BUSY_ONCE, "intent": "talk to someone", "transfer_to": "1000",
                                "options": {"retries": 2, "retry_backoff_s": 0.5}})
    call = stack.wait_status(call_id, {"transferred"} | set(db.FINAL_STATUSES), timeout=60)
    assert call["status"] == "transferred", call
    timeline = stack.timeline(call_id)
    retries = [e["data"] for e in timeline if e["type"] == "call.retry"]
    assert retries == [{"attempt": 2, "after": "busy", "cause": "USER_BUSY", "delay_s": 0.5}], retries
    dialing = [e for e in timeline if e["type"] == "call.dialing"]
    assert len(dialing) == 2 and dialing[1]["data"]["attempt"] == 2
    types = [e["type"] for e in timeline]
    assert types.index("call.retry") < len(types) - 1 - types[::-1].index("call.dialing") < types.index(
        "call.answered")
    _hang_up(stack, call_id)


def test_busy_without_retries_stays_busy(stack: Stack):
    """Default: no retries (the busy attempt counter of the scenario is past its busy entry now, so a
    plain busy company shows the default)."""
    call_id = stack.place_call({"number": "+15550100486", "intent": "talk to someone", "transfer_to": "1000"})
    final = stack.wait_final(call_id, timeout=30)
    assert final["status"] == "busy", final
    assert "call.retry" not in [e["type"] for e in stack.timeline(call_id)]


def test_agent_hangs_up_first_then_we_call_back_in(stack: Stack):
    call_id = stack.place_call({"number": IMPATIENT, "intent": "talk to someone", "transfer_to": "1001",
                                "options": {"call_back_on_agent_hangup": True}})
    final = stack.wait_final(call_id, timeout=90)
    assert final["status"] == "agent_hung_up", final   # twice: the second time it is final
    types = [e["type"] for e in stack.timeline(call_id)]
    assert types.count("call.redial") == 1, types
    assert types.count("call.answered") == 2 and types.count("hold.started") == 2, types
    assert types.index("call.redial") < len(types) - 1 - types[::-1].index("call.answered")
    assert_no_channels(stack)
