"""The bank analyses many streams together and says exactly what each stream's detector says alone.

Real recordings (asterisk prompts, opsound hold music, espeak-ng speech) and a tone file made with
numpy (DTMF digits, SIT, a busy cadence), at 8 and 16 kHz in the same bank.  (a) one HoldDetector
per recording fed everything at once; (b) a bank fed random-sized slices (any byte count, partial
frames included), streams interleaved at random: identical events and per-frame states.
"""

from __future__ import annotations

import numpy as np
import pytest
from audio_helpers import (
    MOH,
    PROMPTS,
    add_noise,
    agent_after_hold,
    cadence,
    level,
    pcm,
    silence,
    sound,
    speech,
    tone,
)

from worker.audio.bank import feed_many
from worker.audio.classifier import FrameClassifier, process_stacked
from worker.audio.detector import SUB_BLOCK, HoldDetector
from worker.audio.features import FeatureExtractor, compute_stacked, frame_samples


def prompt(rate: int) -> np.ndarray:
    announce = level(sound(f"{PROMPTS}/queue-periodic-announce.wav", rate), -20)
    return add_noise(np.concatenate([silence(0.5, rate), announce, silence(1.5, rate)]))


def music(rate: int) -> np.ndarray:
    return add_noise(level(sound(f"{MOH}/manolo_camp-morning_coffee.wav", rate, 10.0, 12.0), -20))


def tones(rate: int) -> np.ndarray:
    """DTMF 1, 5, #, then SIT, then a North American busy signal."""
    dtmf = [(697, 1209), (770, 1336), (941, 1477)]
    parts = [silence(0.4, rate)]
    for lo, hi in dtmf:
        parts += [tone([lo, hi], 0.1, rate, -12.0), silence(0.1, rate)]
    parts += [silence(0.5, rate), tone([913.8], 0.274, rate), tone([1370.6], 0.274, rate),
              tone([1776.7], 0.38, rate), silence(0.8, rate), cadence([480, 620], [0.5, 0.5], 5.0, rate)]
    return add_noise(np.concatenate(parts))


def voicemail(rate: int) -> np.ndarray:
    greeting = level(speech("Hi, you have reached Sam. I cannot take your call right now. Please "
                            "leave a message after the tone and I will call you back.", rate), -20)
    beep = level(sound(f"{PROMPTS}/beep.wav", rate), -16)
    return add_noise(np.concatenate([silence(0.5, rate), greeting, silence(0.4, rate), beep,
                                     silence(2.0, rate)]))


RECORDINGS = [(agent_after_hold, 8000), (prompt, 8000), (music, 16000), (tones, 8000), (tones, 16000),
              (voicemail, 8000), (agent_after_hold, 16000), (prompt, 16000)]


def alone(x: np.ndarray, rate: int) -> tuple[HoldDetector, list[dict]]:
    det = HoldDetector(sample_rate=rate)
    det.frame_states = []
    events = det.feed(pcm(x)) + det.flush()
    return det, [e.to_dict() for e in events]


def test_bank_gives_each_stream_exactly_what_its_detector_alone_gives():
    audio = [pcm(make(rate)) for make, rate in RECORDINGS]
    expected = [alone(make(rate), rate) for make, rate in RECORDINGS]
    assert {d.outcome for d, _ in expected} >= {"human", "sit", "voicemail"}   # the files do decide

    rng = np.random.default_rng(4)
    dets = [HoldDetector(sample_rate=rate) for _, rate in RECORDINGS]
    for d in dets:
        d.frame_states = []
    got: list[list[dict]] = [[] for _ in dets]
    pos = [0] * len(dets)
    rounds = 0
    while any(p < len(a) for p, a in zip(pos, audio, strict=True)):
        items, owners = [], []
        for k, det in enumerate(dets):
            if pos[k] >= len(audio[k]) or rng.random() < 0.2:
                continue                    # this stream brought nothing this round
            # mostly a real-time round (4-6 frames, any byte count), sometimes a backlog or a crumb
            frames = rng.choice([rng.uniform(3.5, 6.5), rng.uniform(0, 1), rng.uniform(20, 700)],
                                p=[0.9, 0.07, 0.03])
            size = max(1, int(frames * det.frame_bytes))
            items.append((det, audio[k][pos[k]:pos[k] + size]))
            owners.append(k)
            pos[k] += size
        for k, events in zip(owners, feed_many(items), strict=True):
            got[k] += [e.to_dict() for e in events]
        rounds += 1
    for k, det in enumerate(dets):
        got[k] += [e.to_dict() for e in det.flush()]
    assert rounds > 200
    for k, (ref, ref_events) in enumerate(expected):
        assert got[k] == ref_events, RECORDINGS[k]
        assert dets[k].frame_states == ref.frame_states, RECORDINGS[k]
        assert dets[k].outcome == ref.outcome
        assert dets[k].frames == ref.frames


@pytest.mark.parametrize("rate", [8000, 16000])
def test_stacked_numbers_are_bit_identical_to_one_stream_at_a_time(rate):
    """Same splits, K streams at once or one by one: every feature and block value is equal."""
    sources = [prompt(rate), music(rate)[: len(prompt(rate))], tones(rate)[: len(prompt(rate))]]
    n = frame_samples(rate)
    clips = [x[: len(x) - len(x) % n].reshape(-1, n) for x in sources]
    frames = min(len(c) for c in clips)
    solo = [FrameClassifier(rate) for _ in clips]
    stacked = [FrameClassifier(rate) for _ in clips]
    for off in range(0, frames - 7, 7):
        one = [c.process(clip[off:off + 7]) for c, clip in zip(solo, clips, strict=True)]
        many = process_stacked(stacked, np.stack([clip[off:off + 7] for clip in clips]))
        for a, b in zip(one, many, strict=True):
            assert (a.start, a.labels, a.active, a.speech, a.tone) == (
                b.start, b.labels, b.active, b.speech, b.tone)
            assert (a.energy_db, a.flux, a.words, a.tone_events) == (
                b.energy_db, b.flux, b.words, b.tone_events)
            assert np.array_equal(a.shape_db, b.shape_db)


def test_features_do_not_depend_on_the_other_rows():
    ex = FeatureExtractor(8000)
    x = prompt(8000)
    clip = x[: len(x) - len(x) % 160].reshape(-1, 160)[:60]
    alone_f = FeatureExtractor(8000).compute(clip)
    many = compute_stacked([ex, FeatureExtractor(8000)], np.stack([clip, clip[::-1].copy()]))
    for name in ("energy_db", "tonality", "purity", "flux", "flatness", "f1", "f2", "level2_db", "bits",
                 "coverage", "shape_db"):
        assert np.array_equal(getattr(alone_f, name), getattr(many, name)[:60]), name


def test_a_partial_frame_waits_and_a_backlog_is_cut_into_sub_blocks():
    x = pcm(agent_after_hold(8000))
    det = HoldDetector(sample_rate=8000)
    ref = HoldDetector(sample_rate=8000)
    assert feed_many([(det, x[:300])]) == [[]]          # under one 320-byte frame: nothing yet
    assert det.frames == 0
    events = feed_many([(det, x[300:])])[0]               # the rest at once: more than SUB_BLOCK frames
    assert len(x) // 320 > SUB_BLOCK
    assert det.frames == len(x) // 320
    assert [e.to_dict() for e in events] == [e.to_dict() for e in ref.feed(x) + ref.flush()]


def test_bad_input_is_refused():
    det = HoldDetector(sample_rate=8000)
    with pytest.raises(TypeError):
        feed_many([(det, "not audio")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        feed_many([(det, b"")], max_frames=0)
