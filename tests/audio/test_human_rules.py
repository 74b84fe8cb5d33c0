"""The decision rules that keep music from passing for a person, on hand-built utterances."""

from __future__ import annotations

import numpy as np

from worker.audio.human import HumanDecider, _Utterance


def greeting_like(sound: int, span: int, music: int) -> _Utterance:
    """An utterance with a clearly speech-like score: `sound` frames over `span`, `music` of them music."""
    u = _Utterance(start=100, last=100 + span - 1, sound=sound, music=music, dips=span // 4)
    u.flux = 0.2 * sound
    levels = np.resize([-20.0, -30.0], sound)
    u.e_sum, u.e_sq = float(levels.sum()), float((levels ** 2).sum())
    return u


def decider_with_recorded_voice() -> HumanDecider:
    d = HumanDecider()
    shape = np.zeros((200, 8), dtype=np.float32)
    d.load(0, shape, np.ones(200, dtype=bool))
    d.recorded.append(np.full(8, 10.0, dtype=np.float32))   # a recording that sounds nothing like it
    d.talk_start = 100
    return d


def test_a_dense_speech_like_utterance_qualifies():
    d = decider_with_recorded_voice()
    u = greeting_like(sound=90, span=100, music=0)
    assert u.speech_score(d.p) > d.p.greeting_score
    assert d._qualifies(u)


def test_a_few_notes_joined_across_short_pauses_are_not_a_greeting():
    d = decider_with_recorded_voice()
    sparse = greeting_like(sound=35, span=100, music=0)            # density 0.35 < 0.5
    assert sparse.speech_score(d.p) > d.p.greeting_score
    assert not d._qualifies(sparse)


def test_what_the_classifier_called_music_throughout_is_not_a_greeting():
    d = decider_with_recorded_voice()
    assert not d._qualifies(greeting_like(sound=90, span=100, music=85))
    assert d._qualifies(greeting_like(sound=90, span=100, music=70))


def test_music_is_not_a_new_voice_however_unlike_the_recordings_it_sounds():
    d = decider_with_recorded_voice()
    assert d._new_voice(greeting_like(sound=90, span=100, music=10))
    assert not d._new_voice(greeting_like(sound=90, span=100, music=60))


def test_after_a_long_recording_only_another_voice_starts_a_greeting():
    d = decider_with_recorded_voice()
    same = greeting_like(sound=90, span=100, music=0)
    same.voice_before = np.zeros(8, dtype=np.float32)              # the profile the ring holds for it
    assert not d._qualifies(same)
    other = greeting_like(sound=90, span=100, music=0)
    other.voice_before = np.full(8, 6.0, dtype=np.float32)
    assert d._qualifies(other)


def music_tail(frames: int) -> int:
    """tail_music bits: the last `frames` sound frames labelled music."""
    return (1 << frames) - 1


def test_on_hold_speech_that_ran_into_the_music_is_a_recording():
    d = decider_with_recorded_voice()
    d.on_hold = True
    # 2 s of speech, then the last 1 s mostly called music: an announcement running into the stream
    ran_into_music = greeting_like(sound=150, span=160, music=45)
    ran_into_music.tail_music = music_tail(45)
    assert not d._qualifies(ran_into_music)
    # the same with the music labels spread over the utterance (1 s statistics on speech) qualifies
    spread = greeting_like(sound=150, span=160, music=45)
    spread.tail_music = music_tail(10)
    assert d._qualifies(spread)


def test_a_short_greeting_called_music_after_the_music_stopped_still_counts():
    d = decider_with_recorded_voice()
    d.on_hold = True
    short = greeting_like(sound=60, span=70, music=45)     # no speech before the tail window
    short.tail_music = music_tail(45)
    assert not d._ends_in_music(short)
    assert d._qualifies(short)


def test_ending_in_music_matters_only_on_hold():
    d = decider_with_recorded_voice()
    u = greeting_like(sound=150, span=160, music=45)
    u.tail_music = music_tail(45)
    assert d._ends_in_music(u)
    assert d._qualifies(u)            # not on hold: no hold stream for it to run back into


def run_frames(d: HumanDecider, pattern: list[tuple[str, int]], music_before: int = 0,
               hint: str = "") -> float | None:
    """Step the decider through `music_before` music frames, then (kind, frames) runs of 'talk' (a
    speech-like utterance: syllable dips, fast spectral change) or 'quiet'; returns when it said human."""
    shape = np.zeros((1, 8), dtype=np.float32)
    words = np.random.default_rng(3).integers(0, 1 << 16, 4000)   # no two stretches alike (not repeats)
    i = 0
    for kind, n in [("music", music_before)] + pattern:
        for k in range(n):
            d.load(i, shape, np.array([kind != "quiet"]))
            if kind == "music":
                dec = d.step(i, True, -25.0, 0.09, False, 0, music=True)
            elif kind == "talk":
                dec = d.step(i, True, -20.0 if k % 4 else -40.0, 0.2, False, int(words[i]))
            else:
                dec = d.step(i, False, -70.0, 0.0, False, 0)
            if dec is not None and dec.kind == "human":
                return dec.t
            i += 1
        if kind == "talk" and hint:
            d.hint(hint, i * 0.02)
    return None


def test_a_direct_answer_needs_a_longer_wait_than_a_greeting_pauses():
    # a direct answer (no music before): a sentence and a 1.6 s pause is how voicemail greetings
    # begin too - not yet a person; 1.7 s of quiet is (after hold music 1.3 s would be)
    assert run_frames(HumanDecider(), [("talk", 80), ("quiet", 80), ("talk", 300)]) is None
    t = run_frames(HumanDecider(), [("talk", 80), ("quiet", 150)])
    assert t is not None and abs(t - (80 + 85) * 0.02) < 0.03
    # "hi, this is ..." opens greetings as often as calls: no shorter wait for it on a direct answer
    greeting = [("talk", 80), ("quiet", 80), ("talk", 300)]
    assert run_frames(HumanDecider(), greeting, hint="hi, this is jo") is None


def test_after_hold_music_the_usual_wait_decides():
    d = HumanDecider()
    t = run_frames(d, [("quiet", 50), ("talk", 80), ("quiet", 90)], music_before=100)
    assert d.music_seen and t is not None and abs(t - (100 + 50 + 80 + 65) * 0.02) < 0.03
    # there a positive hint shortens the wait
    t = run_frames(HumanDecider(), [("quiet", 50), ("talk", 80), ("quiet", 90)], music_before=100,
                   hint="hi, this is jo")
    assert t is not None and abs(t - (100 + 50 + 80 + 35) * 0.02) < 0.03


def test_a_direct_answer_that_tries_again_after_a_pause_is_a_person():
    # "hello?" ... 1.6 s ... "hello, anyone there?" then quiet: decided 1.0 s after the second try
    t = run_frames(HumanDecider(), [("talk", 60), ("quiet", 80), ("talk", 60), ("quiet", 60)])
    assert t is not None and abs(t - (60 + 80 + 60 + 50) * 0.02) < 0.03
    # a greeting's last line after a long pause, 0.9 s of quiet, then its beep: not decided before it
    assert run_frames(HumanDecider(), [("talk", 60), ("quiet", 80), ("talk", 60), ("quiet", 45)]) is None
    # a greeting that runs on after its pause (a monologue) is not
    assert run_frames(HumanDecider(), [("talk", 60), ("quiet", 80), ("talk", 300), ("quiet", 60)]) is None
