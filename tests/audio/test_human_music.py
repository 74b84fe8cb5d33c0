"""Music the classifier calls speech, and a menu's next prompt, are not a person (issue 3, held-out).

The held-note rule is checked on real recordings (asterisk hold music and prompts); the turn rules by
stepping frames straight into HumanDecider as in test_human_turns.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.audio.audio_helpers import sound
from tests.audio.test_human_turns import BANDS, VOICE_A, VOICE_B, Line
from worker.audio.classifier import FrameClassifier
from worker.audio.human import HumanDecider, HumanParams, held_shape

MOH = "/usr/share/asterisk/moh/"
EN = "/usr/share/asterisk/sounds/en/"
HELD = [(MOH + "reno_project-system.wav", 9.0), (MOH + "macroform-cold_day.wav", 53.5)]   # held notes
SMOOTH = [(MOH + "macroform-cold_day.wav", 13.5), (MOH + "macroform-the_simplicity.wav", 7.0)]  # pads
PROMPTS = [EN + "agent-pass.wav", EN + "conf-getpin.wav", EN + "hello-world.wav"]


def shapes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame spectral shapes and sound flags, as the detector loads them into the decider."""
    c = FrameClassifier(8000)
    n = len(x) // 160
    block = c.process(x[:n * 160].reshape(n, 160))
    return np.asarray(block.shape_db), np.asarray(block.active)


def held(x: np.ndarray, **params: Any) -> bool:
    p = HumanParams(**params)
    sh, act = shapes(x)
    return held_shape(sh, act, p.shape_lag_frames, p.min_shape_change, p.min_shape_move_db)


def test_held_notes_keep_their_spectral_shape_and_speech_does_not():
    for path, start in HELD:
        assert held(sound(path, start=start, seconds=1.5)), path
    for path in PROMPTS:
        assert not held(sound(path)), path


def test_the_held_note_threshold_is_a_ratio_of_changes():
    x = sound(HELD[0][0], start=HELD[0][1], seconds=1.5)
    assert held(x, min_shape_move_db=0.0)
    assert not held(x, min_shape_change=0.8, min_shape_move_db=0.0)   # (it changes ~0.9-1.0x as much)


def test_a_smooth_passage_moves_its_shape_less_than_formants_do():
    # slow pads: the shape changes more over 100 ms than from frame to frame, but by < 4.5 dB
    for path, start in SMOOTH:
        x = sound(path, start=start, seconds=1.5)
        assert held(x), path
        assert not held(x, min_shape_move_db=0.0), path     # (the ratio alone does not catch them)
    for path in PROMPTS:
        assert not held(sound(path), min_shape_change=0.0), path


def test_no_change_at_all_or_too_few_frames_is_no_evidence():
    flat = np.zeros((100, BANDS), dtype=np.float32)
    assert not held_shape(flat, np.ones(100, dtype=bool), 5, 1.08)
    noisy = np.random.default_rng(3).normal(0.0, 3.0, (8, BANDS)).astype(np.float32)
    assert not held_shape(noisy, np.ones(8, dtype=bool), 5, 1.08)


def step_real_shapes(line: Line, x: np.ndarray, quiet_after: int = 200) -> None:
    """A speech-scoring stretch (syllable dips, fast flux) whose ring holds the real shapes and sound
    flags of x, then quiet (loaded with shapes of the same width: the ring keeps one width)."""
    sh, act = shapes(x)
    sh = np.concatenate([sh, np.zeros((quiet_after, sh.shape[1]), dtype=sh.dtype)])
    act = np.concatenate([act, np.zeros(quiet_after, dtype=bool)])
    d = line.d
    for k in range(len(sh)):
        d.load(line.i, sh[k:k + 1], act[k:k + 1])
        energy = (-20.0 if k % 4 else -40.0) if act[k] else -70.0
        dec = d.step(line.i, bool(act[k]), energy, 0.2 if act[k] else 0.0, False,
                     int(line.words[line.i]) if act[k] else 0)
        if dec is not None and dec.kind == "human" and line.human_at is None:
            line.human_at = dec.t
        line.i += 1


def after_music(x: np.ndarray, **params: Any) -> Line:
    line = Line(HumanDecider(HumanParams(**params))).hold_music().run("quiet", 50)
    step_real_shapes(line, x)
    return line


def test_a_held_note_after_the_music_is_not_a_greeting():
    for path, start in HELD + SMOOTH:
        x = sound(path, start=start, seconds=1.5)
        assert after_music(x).human_at is None, path
        # the rule is what holds it
        assert after_music(x, min_shape_change=0.0, min_shape_move_db=0.0).human_at is not None, path
    for path in PROMPTS:
        assert after_music(sound(path)).human_at is not None, path


# -- after a recording on hold, the hold stream resuming is "another voice" too --------------------

def voice_after_announcement(flux: float, **params: Any) -> float | None:
    d = HumanDecider(HumanParams(**params))
    d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))     # an announcement heard earlier
    line = Line(d).hold_music().run("quiet", 50)
    line.run("talk", 150, VOICE_A).run("quiet", 30).run("talk", 60, VOICE_B, talk_flux=flux)
    return line.run("quiet", 300).human_at


def test_after_a_recording_a_low_scoring_other_voice_is_the_hold_stream_resuming():
    # talk_flux 0.085 scores about -1 (above greeting_score, at most split_greeting_score): no transfer
    assert voice_after_announcement(0.085) is None
    assert voice_after_announcement(0.085, split_greeting_score=-3.0, split_weak_score=-3.0) is not None
    # an agent's clear speech right after the announcement still decides on the wait
    assert voice_after_announcement(0.2) is not None


def test_after_a_recording_an_unclear_other_voice_waits_for_a_reply():
    # talk_flux 0.12 scores about 1.5 (above split_greeting_score, at most split_weak_score): weak
    assert voice_after_announcement(0.12) is None
    assert voice_after_announcement(0.12, split_weak_score=0.0) is not None
    d = HumanDecider()
    d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))
    line = Line(d).hold_music().run("quiet", 50)
    line.run("talk", 150, VOICE_A).run("quiet", 30).run("talk", 60, VOICE_B, talk_flux=0.12)
    line.run("quiet", 100).run("talk", 30, VOICE_B)          # the person says it again 2 s later
    assert line.human_at is not None


# -- no music heard: another recorded voice after a menu prompt is the menu ------------------------

def prompt_after_menu(first_flux: float, **params: Any) -> float | None:
    line = Line(HumanDecider(HumanParams(**params)))
    line.run("talk", 260, VOICE_A, talk_flux=first_flux).run("quiet", 30).run("talk", 60, VOICE_B)
    return line.run("quiet", 200).human_at


def test_with_no_music_another_voice_after_clear_speech_is_the_next_prompt():
    assert prompt_after_menu(0.2) is None                              # a 5.2 s menu (score ~7), then 1.2 s
    assert prompt_after_menu(0.2, menu_prompt_score=100.0) is not None     # (the older rule transferred)
    # after a long stretch that is not clearly speech (speech-like music, score ~1) another voice is
    # still a greeting of its own
    assert prompt_after_menu(0.11) is not None


# -- a piece joined to the music that scores like music is the music's next phrase ----------------

WEAK_FLUX = 0.064    # a talk scoring -3..-2 here: on hold, a weak greeting (weak_greeting_score..)


def weak_piece_then_reply(gap: int, **params: Any) -> Line:
    """On hold: music, `gap` frames of quiet, a weak-scoring piece, 2 s of quiet, a 0.6 s reply."""
    line = Line(HumanDecider(HumanParams(**params))).hold_music().run("quiet", gap)
    line.run("talk", 60, talk_flux=WEAK_FLUX)
    u = line.d.utt
    assert u is not None and -3.0 < u.speech_score(line.d.p) <= -2.0       # (the setup: a weak score)
    return line.run("quiet", 100).run("talk", 30).run("quiet", 25)


def test_a_weak_piece_split_off_the_music_is_not_confirmed_by_the_next_phrase():
    line = weak_piece_then_reply(15)                  # 0.3 s after the music: split off it
    assert line.d.recent[-1].after_music and line.human_at is None
    assert weak_piece_then_reply(15, after_music_score=-3.0).human_at is not None   # (the older rule)
    # the same line after the music stopped (1 s of quiet) is a weak greeting that a reply confirms
    assert weak_piece_then_reply(50).human_at is not None


# -- music after a recorded voice is a queue, even before 3 s of music in a row -------------------

def queue(voice: np.ndarray, **params: Any) -> Line:
    """A 2 s recorded prompt, 1 s of quiet, 1.2 s of music, 0.3 s, a line in `voice`, 2 s of quiet."""
    line = Line(HumanDecider(HumanParams(**params))).run("talk", 100, VOICE_A).run("quiet", 50)
    line.run("flat", 60, music=True).run("quiet", 15).run("talk", 80, voice)
    return line.run("quiet", 100)


def test_music_after_a_recorded_voice_is_guarded_as_on_hold():
    line = queue(VOICE_A)
    assert line.d.recorded and line.d.music_seen and not line.d.on_hold
    assert line.human_at is None                      # the prompt's voice again: waits for a reply
    assert queue(VOICE_A, queue_guard=False).human_at is not None
    assert queue(VOICE_B).human_at is not None        # another voice after the queue's music: a person
