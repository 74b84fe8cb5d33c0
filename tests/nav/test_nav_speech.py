"""Real audio end to end: recorded and synthesized prompts -> pocketsphinx -> parse_menu -> a choice.

The Asterisk prompts are the Allison voice at 8 kHz (telephone audio, like the audio fork).  The
assertions hold what the embedded recogniser with the menu language model robustly gets right on
them (see worker/stt.py); misheard labels are not asserted, only keys and the words it does hear.
"""

import wave
from pathlib import Path

import pytest

from worker.errors import SpeechError
from worker.llm import KeywordChooser
from worker.menu import is_hold_message, parse_menu
from worker.navigator import MenuNavigator
from worker.stt import (
    Segment,
    SphinxTranscriber,
    StreamingTranscriber,
    arpa_bigram,
    group_words,
    menu_corpus,
    resample,
)
from worker.tts import synthesize

SOUNDS = Path("/usr/share/asterisk/sounds/en")
needs_sounds = pytest.mark.skipif(not SOUNDS.is_dir(), reason="asterisk-core-sounds-en is not installed")


def read_wav(path: str | Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes()), w.getframerate()


@pytest.fixture(scope="session")
def sphinx() -> SphinxTranscriber:
    return SphinxTranscriber()  # the model loads once per process (decoders are cached)


@pytest.fixture(scope="session")
def tts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tts")


def text_of(segments: list[Segment]) -> str:
    return " ".join(s.text for s in segments)


@needs_sounds
def test_asterisk_voicemail_menu_keys(sphinx: SphinxTranscriber) -> None:
    # "Press 2 to change folders, press 3 for advanced options, press 0 for mailbox options" (7.6 s)
    pcm, rate = read_wav(SOUNDS / "vm-opts.wav")
    assert rate == 8000
    heard = text_of(sphinx.transcribe(pcm, rate))
    options = parse_menu(heard)
    assert [o.digits for o in options] == ["2", "3", "0"], heard
    assert "option" in options[1].label and "option" in options[2].label


@needs_sounds
def test_asterisk_press_one_for(sphinx: SphinxTranscriber) -> None:
    heard = text_of(sphinx.transcribe(*read_wav(SOUNDS / "vm-onefor.wav")))
    assert [o.digits for o in parse_menu(heard)] == ["1"], heard


@needs_sounds
@pytest.mark.parametrize("name", ["queue-thankyou.wav", "pls-hold-while-try.wav"])
def test_asterisk_hold_messages(sphinx: SphinxTranscriber, name: str) -> None:
    heard = text_of(sphinx.transcribe(*read_wav(SOUNDS / name)))
    assert is_hold_message(heard), heard
    assert MenuNavigator("billing").on_prompt(heard).kind == "hold"


@needs_sounds
def test_streaming_frames_give_media_time_segments(sphinx: SphinxTranscriber) -> None:
    pcm, rate = read_wav(SOUNDS / "vm-opts.wav")
    stream = StreamingTranscriber(sphinx, rate)
    silence = b"\x00\x00" * rate  # one second before the prompt
    audio = silence + pcm
    for i in range(0, len(audio), 320):  # 20 ms frames, as the audio fork sends them
        stream.feed(audio[i : i + 320])
    segments = stream.end_utterance()
    assert segments and segments[0].start >= 1.0
    assert segments[-1].end <= stream.t + 0.05
    assert [o.digits for o in parse_menu(text_of(segments))] == ["2", "3", "0"]
    assert stream.end_utterance() == []  # the buffer was consumed


def synth(text: str, tts_dir: Path) -> tuple[bytes, int]:
    return read_wav(synthesize(text, rate=8000, voice="en-us+f2", cache_dir=tts_dir))


def test_espeak_menu_to_choice(sphinx: SphinxTranscriber, tts_dir: Path) -> None:
    pcm, rate = synth("Press one for sales. Press two for billing. Press zero for an operator.", tts_dir)
    heard = text_of(sphinx.transcribe(pcm, rate))
    options = parse_menu(heard)
    assert [o.digits for o in options] == ["1", "2", "0"], heard
    assert "billing" in options[1].label and "operator" in options[2].label
    assert KeywordChooser().choose("pay my bill", heard, options).digits == "2"
    assert KeywordChooser().choose("talk to a person", heard, options).digits == "0"


def test_espeak_label_first_menu(sphinx: SphinxTranscriber, tts_dir: Path) -> None:
    pcm, rate = synth("For billing, press two. For technical support, press three.", tts_dir)
    heard = text_of(sphinx.transcribe(pcm, rate))
    options = parse_menu(heard)
    assert [o.digits for o in options] == ["2", "3"], heard
    assert options[0].label == "billing"
    assert MenuNavigator("question about my bill").on_prompt(heard).digits == "2"


def test_silence_and_bad_audio(sphinx: SphinxTranscriber) -> None:
    assert sphinx.transcribe(b"", 8000) == []
    assert text_of(sphinx.transcribe(b"\x00\x00" * 8000, 8000)) == ""
    with pytest.raises(SpeechError, match="whole 16-bit samples"):
        sphinx.transcribe(b"\x00", 8000)
    with pytest.raises(SpeechError, match="sample rate"):
        sphinx.transcribe(b"\x00\x00", 100)
    with pytest.raises(SpeechError, match="model must be one of"):
        SphinxTranscriber(model="klingon")


# --- pure helpers -----------------------------------------------------------------------------------


def test_resample_doubles_length_and_keeps_shape() -> None:
    import numpy as np

    x = (np.sin(np.arange(800) / 8000 * 2 * np.pi * 300) * 10000).astype("<i2")
    y = np.frombuffer(resample(x.tobytes(), 8000, 16000), "<i2")
    assert len(y) == 1600
    assert np.abs(y[::2].astype(int) - x.astype(int)).max() <= 1
    assert resample(b"", 8000, 16000) == b""


def test_group_words_splits_on_pauses() -> None:
    words = [("press", 0.1, 0.4), ("one", 0.45, 0.7), ("please", 1.5, 1.8), ("hold", 1.85, 2.1)]
    assert group_words(words) == [Segment(0.1, 0.7, "press one"), Segment(1.5, 2.1, "please hold")]


def test_menu_language_model_is_a_normalised_arpa_bigram() -> None:
    text = arpa_bigram(["press one", "press two", "press one for billing"])
    lines = text.splitlines()
    assert lines[:3] == ["\\data\\", "ngram 1=7", "ngram 2=8"] and lines[-1] == "\\end\\"
    uni: dict[str, tuple[float, float]] = {}
    bi: dict[tuple[str, str], float] = {}
    section = ""
    for line in lines:
        if line.startswith("\\"):
            section = line
        elif line and section == "\\1-grams:":
            parts = line.split()
            uni[parts[1]] = (10 ** float(parts[0]), 10 ** float(parts[2]) if len(parts) > 2 else 1.0)
        elif line and section == "\\2-grams:":
            p, v, w = line.split()
            bi[(v, w)] = 10 ** float(p)
    assert abs(sum(p for p, _ in uni.values()) - 1.0) < 1e-3
    for v in ("<s>", "press", "one"):  # P(w | v) over the vocabulary sums to one with backoff
        total = sum(bi.get((v, w), uni[v][1] * uni[w][0]) for w in uni if w != "<s>")
        assert abs(total - 1.0) < 1e-3, v
    assert bi[("press", "one")] > bi[("press", "two")] > uni["press"][1] * uni["billing"][0]
    assert any(s.startswith("for billing press") for s in menu_corpus())


def test_transcripts_do_not_depend_on_earlier_calls(sphinx: SphinxTranscriber, tts_dir: Path) -> None:
    a = synth("For billing, press two. For technical support, press three.", tts_dir)
    b = read_wav(SOUNDS / "vm-onefor.wav") if SOUNDS.is_dir() else synth("Please hold.", tts_dir)
    first = sphinx.transcribe(*a)
    sphinx.transcribe(*b)
    assert sphinx.transcribe(*a) == first


# --- text to speech (espeak-ng) ---------------------------------------------------------------------


def test_synthesize_espeak_rates_and_cache(tmp_path: Path) -> None:
    p8 = synthesize("one two three four", rate=8000, cache_dir=tmp_path)
    p16 = synthesize("one two three four", rate=16000, cache_dir=tmp_path)
    assert p8 != p16
    for path, rate in ((p8, 8000), (p16, 16000)):
        with wave.open(path) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2)
            assert 1.0 < w.getnframes() / rate < 6.0
    mtime = Path(p8).stat().st_mtime_ns
    assert synthesize("one two three four", rate=8000, cache_dir=tmp_path) == p8
    assert Path(p8).stat().st_mtime_ns == mtime
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".wav", ".wav"]


@pytest.mark.parametrize(("text", "rate", "message"), [("", 8000, "empty"), ("hi", 44100, "rate must be")])
def test_synthesize_rejects_bad_input(tmp_path: Path, text: str, rate: int, message: str) -> None:
    with pytest.raises(SpeechError, match=message):
        synthesize(text, rate=rate, cache_dir=tmp_path)


def test_synthesize_without_espeak_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpeechError, match="espeak-ng is not installed"):
        synthesize("hello", cache_dir=tmp_path)


@needs_sounds
def test_decoding_lets_other_greenlets_run(sphinx: SphinxTranscriber) -> None:
    import gevent
    from gevent.event import Event

    pcm, rate = read_wav(SOUNDS / "pls-hold-while-try.wav")  # 2.4 s: about ten decode chunks
    sphinx.transcribe(pcm[:3200], rate)  # model loaded before measuring
    done, ticks = Event(), [0]

    def ticker() -> None:
        while not done.is_set():
            ticks[0] += 1
            gevent.sleep(0)

    g = gevent.spawn(ticker)
    gevent.sleep(0)
    before = ticks[0]
    sphinx.transcribe(pcm, rate)
    during = ticks[0] - before
    done.set()
    g.join(timeout=5)
    assert during >= 5, during
