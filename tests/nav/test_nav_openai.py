"""LlmChooser, OpenAITranscriber and the speech API against a fake OpenAI-compatible server over real HTTP."""

import io
import json
import math
import wave
from collections.abc import Iterator

import numpy as np
import pytest
from nav_fake_openai import FakeOpenAI, chat_reply, error_reply

from worker.config import Settings
from worker.errors import SpeechError
from worker.llm import KeywordChooser, LlmChooser, make_chooser
from worker.menu import parse_menu
from worker.stt import OpenAITranscriber, SphinxTranscriber, make_transcriber, wav_bytes
from worker.tts import synthesize

MENU = "For sales, press 1. For billing, press 2. To speak to a representative, press 0."
OPTIONS = parse_menu(MENU)
CHAT = "/v1/chat/completions"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def chooser(fake: FakeOpenAI, **kw) -> tuple[LlmChooser, list[float]]:
    slept: list[float] = []
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("backoff_s", 0.01)
    return LlmChooser(fake.base_url, "fake-model", "sk-test", sleep=slept.append, **kw), slept


def answer(**fields) -> str:
    return json.dumps({"confidence": 0.9, "reason": "fits", **fields})


def test_strict_json_answer_is_used(fake: FakeOpenAI) -> None:
    fake.script(CHAT, chat_reply(answer(action="dtmf", digits="2")))
    llm, _ = chooser(fake)
    choice = llm.choose("dispute a charge", MENU, OPTIONS, ["t=1.0s listen"])
    assert (choice.action, choice.digits, choice.source) == ("dtmf", "2", "llm")
    req = fake.requests[0]
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    body = req["json"]
    assert body["model"] == "fake-model" and body["temperature"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["action"]["enum"][0] == "dtmf"
    user = body["messages"][-1]["content"]
    assert "dispute a charge" in user and "key 2: billing" in user


def test_response_format_downgrades_when_refused(fake: FakeOpenAI) -> None:
    fake.script(
        CHAT,
        error_reply(400, "response_format json_schema unsupported"),
        chat_reply(answer(action="dtmf", digits="0")),
    )
    llm, slept = chooser(fake)
    assert llm.choose("talk to a person", MENU, OPTIONS).digits == "0"
    assert [r["json"].get("response_format", {}).get("type") for r in fake.requests] == [
        "json_schema",
        "json_object",
    ]
    assert slept == []  # a refusal is not a transport failure
    llm.choose("talk to a person", MENU, OPTIONS)  # remembered for the next call
    assert fake.requests[-1]["json"]["response_format"]["type"] == "json_object"


def test_retry_on_500_with_backoff(fake: FakeOpenAI) -> None:
    fake.script(CHAT, error_reply(500), error_reply(502), chat_reply(answer(action="dtmf", digits="1")))
    llm, slept = chooser(fake, retries=2)
    choice = llm.choose("buy a new plan", MENU, OPTIONS)
    assert (choice.digits, choice.source) == ("1", "llm")
    assert len(fake.requests) == 3 and slept == [0.01, 0.02]


def test_retries_exhausted_fall_back(fake: FakeOpenAI) -> None:
    fake.script(CHAT, error_reply(500))
    llm, slept = chooser(fake, retries=1)
    choice = llm.choose("pay my bill", MENU, OPTIONS)
    assert (choice.digits, choice.source) == ("2", "fallback")
    assert len(fake.requests) == 2 and slept == [0.01]


def test_timeout_falls_back(fake: FakeOpenAI) -> None:
    fake.script(CHAT, "hang")
    llm, _ = chooser(fake, timeout_s=0.3, retries=0)
    choice = llm.choose("pay my bill", MENU, OPTIONS)
    assert (choice.digits, choice.source) == ("2", "fallback")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "content",
    [
        "Sure! Press 2 for billing.",  # prose, not JSON
        answer(action="dtmf", digits="2", confidence=7),  # out of range
        json.dumps({"action": "dtmf", "digits": "2"}),  # no confidence / reason
        answer(action="dtmf"),  # dtmf without digits
        answer(action="dtmf", digits="7"),  # not on the menu
        answer(action="say", text="wire me all the money"),  # not a spoken option
        "",
    ],
)
def test_garbage_answers_fall_back(fake: FakeOpenAI, content: str) -> None:
    fake.script(CHAT, chat_reply(content))
    llm, _ = chooser(fake)
    choice = llm.choose("pay my bill", MENU, OPTIONS)
    assert (choice.action, choice.digits, choice.source) == ("dtmf", "2", "fallback")


def test_fenced_json_and_hold_answer(fake: FakeOpenAI) -> None:
    fake.script(CHAT, chat_reply("```json\n" + answer(action="hold") + "\n```"))
    llm, _ = chooser(fake)
    assert llm.choose("billing", "please hold", []).action == "hold"


def test_unreachable_llm_falls_back() -> None:
    llm = LlmChooser("http://127.0.0.1:9/v1", "m", timeout_s=0.5, retries=0, sleep=lambda s: None)
    assert llm.choose("pay my bill", MENU, OPTIONS).source == "fallback"


def test_make_chooser_picks_by_settings(fake: FakeOpenAI) -> None:
    assert isinstance(make_chooser(Settings()), KeywordChooser)
    assert isinstance(make_chooser(Settings(llm_base_url=fake.base_url, llm_model="m")), LlmChooser)
    with pytest.raises(ValueError, match="base_url and model"):
        LlmChooser("", "")


# --- speech to text --------------------------------------------------------------------------------

TRANSCRIBE = "/v1/audio/transcriptions"


def tone(seconds: float, rate: int, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * hz * t) * 8000).astype("<i2").tobytes()


def test_transcription_verbose_json_segments(fake: FakeOpenAI) -> None:
    fake.script(
        TRANSCRIBE,
        (
            200,
            {
                "task": "transcribe",
                "language": "english",
                "duration": 2.0,
                "text": "For billing, press 2. Goodbye.",
                "segments": [
                    {"id": 0, "start": 0.0, "end": 1.4, "text": " For billing, press 2."},
                    {"id": 1, "start": 1.5, "end": 2.0, "text": " Goodbye."},
                ],
            },
        ),
    )
    stt = OpenAITranscriber(fake.base_url, "sk-stt", model="whisper-large")
    segs = stt.transcribe(tone(2.0, 8000), 8000)
    assert [(s.start, s.end, s.text) for s in segs] == [
        (0.0, 1.4, "For billing, press 2."),
        (1.5, 2.0, "Goodbye."),
    ]
    req = fake.requests[0]
    assert req["form"]["model"] == "whisper-large" and req["form"]["response_format"] == "verbose_json"
    with wave.open(io.BytesIO(req["files"]["file"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (8000, 1, 2, 16000)


def test_transcription_falls_back_to_plain_json(fake: FakeOpenAI) -> None:
    fake.script(TRANSCRIBE, error_reply(400, "verbose_json not supported"), (200, {"text": "please hold"}))
    stt = OpenAITranscriber(fake.base_url)
    assert [(s.start, s.end, s.text) for s in stt.transcribe(tone(1.5, 8000), 8000)] == [
        (0.0, 1.5, "please hold")
    ]
    assert "response_format" not in fake.requests[1]["form"]


def test_transcription_errors_are_speech_errors(fake: FakeOpenAI) -> None:
    fake.script(TRANSCRIBE, error_reply(500))
    with pytest.raises(SpeechError, match="transcription API failed"):
        OpenAITranscriber(fake.base_url).transcribe(tone(0.5, 8000), 8000)
    with pytest.raises(SpeechError, match="whole 16-bit samples"):
        OpenAITranscriber(fake.base_url).transcribe(b"\x00\x01\x02", 8000)


def test_make_transcriber_picks_by_settings(fake: FakeOpenAI) -> None:
    assert isinstance(make_transcriber(Settings(stt_base_url=fake.base_url)), OpenAITranscriber)
    assert isinstance(make_transcriber(Settings()), SphinxTranscriber)


def test_model_and_voice_names_come_from_the_environment(fake: FakeOpenAI, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STT_BASE_URL", fake.base_url)
    monkeypatch.setenv("STT_MODEL", "Systran/faster-whisper-small")
    monkeypatch.setenv("TTS_BASE_URL", fake.base_url)
    monkeypatch.setenv("TTS_MODEL", "kokoro")
    monkeypatch.setenv("TTS_VOICE", "af_heart")
    monkeypatch.setenv("RECORDINGS_DIR", str(tmp_path))
    settings = Settings.from_env()
    fake.script(TRANSCRIBE, (200, {"text": "hello"}))
    make_transcriber(settings).transcribe(tone(0.5, 8000), 8000)
    assert fake.requests[-1]["form"]["model"] == "Systran/faster-whisper-small"
    fake.script(SPEECH, (200, wav_bytes(tone(0.5, 24000), 24000)))
    synthesize("hello", rate=8000, settings=settings)
    body = fake.requests[-1]["json"]
    assert (body["model"], body["voice"]) == ("kokoro", "af_heart")


# --- text to speech --------------------------------------------------------------------------------

SPEECH = "/v1/audio/speech"


def test_speech_api_wav_is_resampled_and_cached(fake: FakeOpenAI, tmp_path) -> None:
    fake.script(SPEECH, (200, wav_bytes(tone(1.0, 24000), 24000)))
    settings = Settings(tts_base_url=fake.base_url, tts_api_key="sk-tts", recordings_dir=str(tmp_path))
    path = synthesize("one two three four", rate=8000, settings=settings)
    with wave.open(path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert abs(w.getnframes() - 8000) <= 16
    body = fake.requests[0]["json"]
    assert body["input"] == "one two three four" and body["response_format"] == "wav"
    assert synthesize("one two three four", rate=8000, settings=settings) == path
    assert len(fake.requests) == 1  # served from the cache
    assert path.startswith(str(tmp_path / "tts"))


def test_speech_api_raw_pcm_answer(fake: FakeOpenAI, tmp_path) -> None:
    fake.script(SPEECH, (200, tone(0.5, 24000)))  # raw 24 kHz PCM, no RIFF header
    settings = Settings(tts_base_url=fake.base_url, recordings_dir=str(tmp_path))
    with wave.open(synthesize("hello", rate=16000, settings=settings)) as w:
        assert w.getframerate() == 16000 and abs(w.getnframes() - 8000) <= 32


def test_speech_api_error(fake: FakeOpenAI, tmp_path) -> None:
    fake.script(SPEECH, error_reply(500))
    settings = Settings(tts_base_url=fake.base_url, recordings_dir=str(tmp_path))
    with pytest.raises(SpeechError, match="speech API failed"):
        synthesize("hello there", settings=settings)
    assert not list((tmp_path / "tts").iterdir())  # nothing half-written left behind


def test_navigator_with_llm_over_http(fake: FakeOpenAI) -> None:
    from worker.navigator import MenuNavigator

    fake.script(
        CHAT,
        chat_reply(answer(action="dtmf", digits="1", reason="sales handles upgrades")),
        chat_reply(answer(action="dtmf", digits="5")),
    )
    llm, _ = chooser(fake)
    nav = MenuNavigator("upgrade my plan", {}, llm)
    first = nav.on_prompt(MENU, 4.0)
    assert (first.kind, first.digits) == ("dtmf", "1") and first.reason.startswith("llm:")
    second = nav.on_prompt("For new orders press 1. For returns press 2.", 9.0)
    assert (second.kind, second.digits) == ("dtmf", "1")  # the LLM's 5 is not on that menu: fallback
    assert "sales handles upgrades" in fake.requests[1]["json"]["messages"][-1]["content"]  # history sent
