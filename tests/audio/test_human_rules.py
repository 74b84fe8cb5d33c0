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
