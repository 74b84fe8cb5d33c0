"""The detector on real recordings: decisions, causality, chunking, fingerprints, hints, bad input."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from audio_helpers import (
    MOH,
    PROMPTS,
    add_noise,
    kinds,
    level,
    pcm,
    run,
    silence,
    sound,
    speech,
    tone,
    write_wav,
)

from worker.audio import Fingerprint, FingerprintError, HoldDetector
from worker.audio.fingerprint import FingerprintStore, bit_error_rate

RATES = [8000, 16000]


def music(rate: int, seconds: float, start: float = 30.0) -> np.ndarray:
    return level(sound(f"{MOH}/macroform-the_simplicity.wav", rate, start, seconds), -20)


def agent(rate: int) -> tuple[np.ndarray, float]:
    """Hold music, then a live agent: a short greeting, a wait, a second try. Returns audio and onset."""
    first = level(speech("Hello, this is Anna speaking.", rate), -20)
    second = level(speech("Hello? Are you there?", rate), -20)
    parts = [music(rate, 25.0), silence(0.6, rate), first, silence(2.0, rate), second, silence(3.0, rate)]
    onset = (len(parts[0]) + len(parts[1])) / rate
    return add_noise(np.concatenate(parts)), onset


@pytest.mark.parametrize("rate", RATES)
def test_agent_after_hold_music_is_human_soon_after_the_greeting(rate):
    x, onset = agent(rate)
    det, events = run(x, rate)
    assert det.outcome == "human"
    human = kinds(events, "human")
    assert len(human) == 1
    assert onset < human[0].t <= onset + 6.0
    assert det.likely_human_at is not None and onset < det.likely_human_at <= human[0].t


@pytest.mark.parametrize("rate", RATES)
def test_cutting_just_after_human_at_gives_the_same_human_at(rate):
    x, _ = agent(rate)
    det, _ = run(x, rate)
    assert det.human_at is not None
    cut = x[: int((det.human_at + 0.1) * rate)]
    again, _ = run(cut, rate)
    assert again.human_at == det.human_at


@pytest.mark.parametrize("chunk", [1, 7, 320, 641, 16000])
def test_any_split_of_the_bytes_gives_the_same_events(chunk):
    x, _ = agent(8000)
    _, whole = run(x, 8000)
    det, split = run(x, 8000, chunk=chunk)
    assert [e.to_dict() for e in split] == [e.to_dict() for e in whole]
    assert det.media_seconds == pytest.approx(len(x) // 160 * 0.02)


def test_hold_music_with_a_recorded_announcement_is_not_human():
    ann = level(sound(f"{PROMPTS}/queue-periodic-announce.wav"), -20)
    parts = [music(8000, 20.0), silence(0.3), ann, silence(0.3), music(8000, 20.0, 80.0)]
    x = add_noise(np.concatenate(parts))
    det, events = run(x)
    assert det.outcome is None and det.finish() == "no_human"
    assert not kinds(events, "human")


def test_ivr_menu_read_twice_is_not_human():
    menu = level(np.concatenate([sound(f"{PROMPTS}/{n}.wav") for n in
                                 ("dir-welcome", "dir-instr", "if-correct-press")]), -20)
    x = add_noise(np.concatenate([menu, silence(3.0), menu, silence(3.0)]))
    det, _ = run(x)
    assert det.outcome is None


def test_voicemail_greeting_then_beep_is_voicemail():
    greeting = level(speech("Hi, you have reached Anna. I am not at my desk right now. Please leave "
                            "your name, number and a short message after the tone, "
                            "and I will call you back.", 8000), -20)
    beep = sound(f"{PROMPTS}/beep.wav")
    x = add_noise(np.concatenate([silence(0.5), greeting, silence(0.4), level(beep, -16), silence(4.0)]))
    det, events = run(x)
    assert det.outcome == "voicemail"
    assert kinds(events, "beep") and not kinds(events, "human")


def test_a_recording_known_for_the_company_is_not_a_human():
    """A short prompt and a pause looks like a greeting, unless it was heard before (fingerprint)."""
    prompt = level(sound(f"{PROMPTS}/pls-hold-while-try.wav"), -20)
    x = add_noise(np.concatenate([silence(1.0), prompt, silence(3.0)]))
    det, _ = run(x)
    assert det.outcome == "human"                       # nothing known: turn-taking says human
    # a previous call stored it for this company
    earlier = HoldDetector(8000)
    # heard before at another sub-frame alignment (10 ms) and level: fingerprints must not care
    heard = np.concatenate([silence(1.01), 0.7 * prompt, silence(0.6), music(8000, 5.0)])
    earlier.feed(pcm(add_noise(heard, seed=9)))
    earlier.feed(pcm(silence(0.3)))
    stored = earlier.fingerprints()
    assert stored and all(set(d) >= {"v", "kind", "words"} for d in stored)
    det, _ = run(x, known=stored)
    assert det.outcome is None


def test_fingerprint_round_trip_and_matching():
    words = np.random.default_rng(3).integers(0, 2 ** 16, 200, dtype=np.uint16)
    fp = Fingerprint.from_dict(Fingerprint(words).to_dict())
    assert np.array_equal(fp.words, words)
    assert bit_error_rate(words[50:90], words) == 0.0
    other = np.random.default_rng(4).integers(0, 2 ** 16, 40, dtype=np.uint16)
    assert bit_error_rate(other, words) > 0.3
    store = FingerprintStore([fp])
    assert store.is_repeat(words[10:60]) and not store.is_repeat(other)
    with pytest.raises(FingerprintError):
        Fingerprint.from_dict({"v": 1, "words": "not base64!"})
    with pytest.raises(FingerprintError):
        Fingerprint.from_dict({"v": 99, "words": ""})
    with pytest.raises(FingerprintError):
        Fingerprint.from_dict(None)  # type: ignore[arg-type]
    # a corrupt stored row does not stop the call: it is skipped and counted
    det = HoldDetector(8000, known=[fp.to_dict(), None, {"v": 1}])  # type: ignore[list-item]
    assert det.bad_known == 2 and len(det.store.known) == 1


def test_transcript_hints():
    prompt = level(speech("Thank you for holding.", 8000), -20)
    x = add_noise(np.concatenate([silence(1.0), prompt, silence(3.0)]))
    # a negative hint marks the utterance recorded
    det = HoldDetector(8000)
    data = pcm(x)
    cut = int(2.0 * 8000) * 2
    det.feed(data[:cut])
    assert det.transcript_hint("Thank you for holding, your call is important to us") == -1
    det.feed(data[cut:])
    det.flush()
    assert det.outcome is None
    # a positive one makes the decision sooner
    plain, _ = run(x)
    hinted = HoldDetector(8000)
    hinted.feed(data[:cut])
    assert hinted.transcript_hint("hi, my name is Anna, how can I help you") == 1
    hinted.feed(data[cut:])
    hinted.flush()
    assert plain.human_at is not None and hinted.human_at is not None
    assert hinted.human_at < plain.human_at
    assert hinted.transcript_hint("the weather") == 0


def test_prompt_ended_for_listen_steps():
    det = HoldDetector(8000)
    det.feed(pcm(level(speech("For sales press one.", 8000), -20)))
    assert not det.prompt_ended(700)
    det.feed(pcm(silence(1.0)))
    assert det.prompt_ended(700)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="8000 or 16000"):
        HoldDetector(sample_rate=44100)
    det = HoldDetector(8000)
    with pytest.raises(TypeError, match="bytes"):
        det.feed("not audio")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        det.transcript_hint(None)  # type: ignore[arg-type]


def test_partial_frames_wait_for_more_bytes():
    det = HoldDetector(8000)
    assert det.feed(b"\x00" * 319) == []
    assert det.flush() == [] and det.media_seconds == 0.0
    det.feed(b"\x00")
    assert det.media_seconds == 0.0              # one frame waits for a batch (params.batch_frames)
    det.flush()
    assert det.media_seconds == pytest.approx(0.02)
    det.feed(b"\x00" * 320 * det.params.batch_frames)
    assert det.media_seconds == pytest.approx(0.02 + 0.02 * det.params.batch_frames)


def test_tone_then_silence_is_no_human():
    det, _ = run(np.concatenate([tone([1000], 0.2), silence(5.0)]))
    assert det.finish() == "no_human"


def test_lost_packets_resampled_to_16k_do_not_pull_the_noise_floor_down(tmp_path):
    """A lost 20 ms packet is a zero frame at 8 kHz; resampled to 16 kHz it is only nearly zero."""
    x, onset = agent(8000)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160).copy()
    frames[np.random.default_rng(5).random(len(frames)) < 0.02] = 0.0
    src, dst = str(tmp_path / "8k.wav"), str(tmp_path / "16k.wav")
    write_wav(src, frames.reshape(-1))
    subprocess.run(["sox", src, "-r", "16000", dst], check=True, capture_output=True)
    y = sound(dst, 16000)
    det, _ = run(y, 16000)
    assert det.outcome == "human" and det.human_at is not None
    assert onset < det.human_at <= onset + 6.0


def hold_music(seconds: float, start: float = 30.0) -> np.ndarray:
    return level(sound(f"{MOH}/reno_project-system.wav", 8000, start, seconds), -20)


def test_music_stops_then_a_greeting_and_a_long_wait_is_a_hand_over():
    """No recorded voice heard yet: the hold stream going quiet before and after a greeting decides."""
    greeting = level(speech("Good afternoon, customer service, my name is Anna.", 8000), -20)
    parts = [hold_music(25.0), silence(1.0), greeting, silence(5.0)]
    x = add_noise(np.concatenate(parts))
    det, events = run(x)
    human = kinds(events, "human")
    assert det.outcome == "human" and human[0].detail == "hold stream stopped"
    end = (len(parts[0]) + len(parts[1]) + len(greeting)) / 8000
    assert end + 1.0 < human[0].t < end + 2.5      # (espeak ends with a little silence)


def test_announcement_slotted_into_the_stream_then_a_quiet_stretch_of_music_is_not_human():
    """The same quiet after the voice, but the announcement followed the music within 0.3 s."""
    ann = level(sound(f"{PROMPTS}/queue-thankyou.wav"), -20)
    x = add_noise(np.concatenate([hold_music(25.0), silence(0.3), ann, silence(3.5),
                                  hold_music(20.0, 80.0)]))
    det, events = run(x)
    assert det.outcome is None and not kinds(events, "human")
