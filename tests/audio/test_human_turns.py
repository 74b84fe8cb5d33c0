"""Decision rules added for issue 3 (recall without false transfers), each tested both ways.

Frames are stepped straight into HumanDecider: 'talk' is a speech-like stretch (syllable dips, fast
spectral change), 'flat' a steady stretch (a music-like score), 'quiet' the line between.  A voice is
the spectral shape the ring holds for its frames.
"""

from __future__ import annotations

import numpy as np

from worker.audio.human import HumanDecider, HumanParams, _Utterance

BANDS = 8
VOICE_A = np.zeros(BANDS, dtype=np.float32)
VOICE_B = np.linspace(-6.0, 6.0, BANDS, dtype=np.float32)     # 3.9 dB rms from VOICE_A


class Line:
    """Feeds frames to a decider and remembers the first 'human' decision."""

    def __init__(self, d: HumanDecider | None = None) -> None:
        self.d = d or HumanDecider()
        self.i = 0
        self.human_at: float | None = None
        self.words = np.random.default_rng(5).integers(0, 1 << 16, 20000)   # no stretch repeats

    def run(self, kind: str, n: int, voice: np.ndarray = VOICE_A, music: bool = False,
            talk_flux: float = 0.2) -> Line:
        for k in range(n):
            active = kind != "quiet"
            self.d.load(self.i, voice[None, :], np.array([active]))
            if kind == "talk":
                energy, flux = (-20.0 if k % 4 else -40.0), talk_flux
            elif kind == "flat":
                energy, flux = -25.0, 0.09
            else:
                energy, flux = -70.0, 0.0
            dec = self.d.step(self.i, active, energy, flux, False, int(self.words[self.i]) if active else 0,
                              music=music and active)
            if dec is not None and dec.kind == "human" and self.human_at is None:
                self.human_at = dec.t
            self.i += 1
        return self

    def hold_music(self, n: int = 250) -> Line:
        return self.run("flat", n, music=True)


def utterance(sound: int, music: int, score_like: str) -> _Utterance:
    u = _Utterance(start=0, last=sound - 1, sound=sound, music=music)
    if score_like == "speech":
        u.dips, u.flux = sound // 4, 0.2 * sound
        levels = np.resize([-20.0, -40.0], sound)
    else:
        u.flux = 0.09 * sound
        levels = np.full(sound, -25.0)
    u.e_sum, u.e_sq = float(levels.sum()), float((levels ** 2).sum())
    return u


# -- a stretch the classifier called speech is never "music-like" --------------------------------

def test_a_steady_stretch_is_music_like_only_if_the_classifier_called_it_music():
    d = HumanDecider()
    assert d._music_like(utterance(300, 200, "flat"))          # steady and called music: music
    assert not d._music_like(utterance(300, 0, "flat"))        # steady but called speech: an IVR menu


def test_an_ivr_menu_read_on_after_a_short_pause_stays_one_talk():
    # a long menu with a music-like score that the classifier called speech, a 0.3 s pause, a last
    # short prompt, then quiet: the end of a monologue, not a person waiting
    line = Line().run("flat", 300).run("quiet", 15).run("talk", 80).run("quiet", 20)
    assert line.d.utt is not None and not line.d._qualifies(line.d.utt)
    line.run("quiet", 200)
    assert line.human_at is None
    # the same first stretch called music throughout (hold music, not a menu) ends before the voice:
    # the short talk after it is a greeting of its own
    line = Line().run("flat", 300, music=True).run("quiet", 15).run("talk", 80).run("quiet", 20)
    assert line.d.utt is not None and line.d._qualifies(line.d.utt)


# -- a piece under 0.5 s split off the music is its last note -------------------------------------

def test_a_blip_split_off_the_music_is_not_a_greeting():
    d = HumanDecider()
    d.talk_start = 0
    assert not d._qualifies(utterance(23, 0, "speech"))        # 0.46 s of sound
    assert d._qualifies(utterance(30, 0, "speech"))            # 0.6 s


# -- on hold with nothing recorded to compare with: a reply decides, not 9 s of quiet -------------

def test_speech_right_after_the_music_waits_for_a_reply_however_long_the_quiet():
    # music, 0.3 s gap, 2 s of speech, then 12 s of quiet (a music track that opens very quietly
    # right after an announcement looks like this): no transfer
    line = Line().hold_music().run("quiet", 15).run("talk", 100).run("quiet", 600)
    assert line.d.on_hold and line.human_at is None
    # a reply 2 s later confirms it
    line = Line().hold_music().run("quiet", 15).run("talk", 100).run("quiet", 100).run("talk", 30)
    assert line.human_at is not None and abs(line.human_at - (250 + 15 + 100 + 100 + 10) * 0.02) < 0.03


def test_a_hand_over_after_the_stream_went_quiet_still_decides_on_the_wait():
    # the music stopped 1 s before the voice: a hand-over, decided 1.8 s into the quiet after it
    line = Line().hold_music().run("quiet", 50).run("talk", 100).run("quiet", 150)
    assert line.human_at is not None and abs(line.human_at - (250 + 50 + 100 + 90) * 0.02) < 0.03


# -- on hold, a voice change after a short pause starts a new talk --------------------------------

def test_on_hold_another_voice_after_a_short_pause_is_a_new_talk():
    d = HumanDecider()
    d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))     # an announcement heard earlier
    # 3 s of one voice, 0.6 s pause, 1.6 s of another: together longer than a greeting, but the
    # second voice is a greeting of its own
    def two_talks(second: np.ndarray, **params: float) -> float | None:
        d = HumanDecider(HumanParams(**params))
        d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))
        line = Line(d).hold_music().run("quiet", 50)
        line.run("talk", 150, VOICE_A).run("quiet", 30).run("talk", 80, second).run("quiet", 100)
        return line.human_at

    assert two_talks(VOICE_B) is not None
    # the same voice running on is one talk, too long for a greeting
    assert two_talks(VOICE_A) is None
    # as it was before: a voice change counted only after 5 s of sound
    assert two_talks(VOICE_B, voice_change_min_s=5.0) is None


def test_the_voice_change_rule_needs_a_second_of_sound_before_the_pause():
    assert HumanParams().voice_change_min_s == 1.0
    d = HumanDecider()
    d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))
    # 0.6 s before: a fragment, the talk starts with the second voice anyway (the fragment rule)
    line = Line(d).hold_music().run("quiet", 50).run("talk", 30, VOICE_A).run("quiet", 30)
    line.run("talk", 80, VOICE_B)
    line.run("quiet", 100)
    assert line.human_at is not None


# -- on hold, a greeting with a low speech score needs a reply ------------------------------------

def weak_greeting(d: HumanDecider) -> _Utterance:
    """A 1.6 s utterance scoring between weak_greeting_score and greeting_score."""
    u = utterance(80, 10, "speech")
    u.flux -= 0.155 * u.sound           # less spectral change than speech: score about -2.7
    assert d.p.weak_greeting_score < u.speech_score(d.p) <= d.p.greeting_score
    return u


def test_on_hold_a_low_scoring_greeting_qualifies_but_is_weak():
    d = HumanDecider()
    d.talk_start = 0
    u = weak_greeting(d)
    assert not d._qualifies(u)                  # not on hold: below greeting_score
    d.on_hold = d.music_seen = True
    assert d._qualifies(u) and d._weak(u)
    u.flux -= 0.02 * u.sound                    # score about -4.1: not a greeting at all
    assert not d._qualifies(u)


def test_a_weak_greeting_decides_only_on_a_reply():
    def weak_line() -> Line:
        d = HumanDecider()
        d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))   # it is a new voice, even so
        line = Line(d).hold_music().run("quiet", 50)
        line.run("talk", 80, talk_flux=0.061)   # less spectral change than speech: score about -2.7
        u = line.d.utt
        assert u is not None and line.d._qualifies(u) and line.d._weak(u)
        return line

    line = weak_line().run("quiet", 200)
    assert line.human_at is None                # hand-over gap and new voice, but weak: no decision
    line = weak_line().run("quiet", 100).run("talk", 30)
    assert line.human_at is not None            # the line spoke again: a person
    # the same talk scoring as speech decides on the wait (on the hand-over, before any reply)
    d = HumanDecider()
    d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))
    line = Line(d).hold_music().run("quiet", 50).run("talk", 80).run("quiet", 100)
    assert line.human_at is not None


# -- a reply confirms only if it is as dense as speech ---------------------------------------------

def test_a_sparse_reply_does_not_confirm_a_waiting_greeting():
    def pending_line() -> Line:
        d = HumanDecider()
        d.recorded.append(VOICE_A.copy())       # the greeting sounds like a recording heard: it waits
        line = Line(d).hold_music().run("quiet", 15).run("talk", 80).run("quiet", 100)
        assert line.d.utt is not None and line.d.utt.pending and line.human_at is None
        return line

    line = pending_line()
    for _ in range(6):                          # plucked notes: a short attack, then quiet while it rings
        line.run("talk", 2).run("quiet", 5)
    assert line.human_at is None
    line = pending_line().run("talk", 15)       # a person speaking again
    assert line.human_at is not None


# -- a sparse piece split off the music needs a reply ----------------------------------------------

def test_a_sparse_piece_right_after_the_music_waits_for_a_reply():
    def after_music(piece: list[tuple[str, int]]) -> Line:
        d = HumanDecider()
        d.recorded.append(np.full(BANDS, 10.0, dtype=np.float32))   # an announcement heard earlier
        line = Line(d).hold_music().run("quiet", 10)                # 0.2 s: the piece is split off it
        for kind, n in piece:
            line.run(kind, n)
        u = line.d.utt
        assert u is not None and u.after_music and line.d._qualifies(u)
        return line

    notes = [("talk", 5), ("quiet", 4)] * 12 + [("talk", 5)]      # 55 % sound: notes ringing out
    line = after_music(notes)
    assert line.d._weak(line.d.utt)
    line.run("quiet", 150)
    assert line.human_at is None
    line = after_music(notes).run("quiet", 100).run("talk", 30)    # then a voice: a person
    assert line.human_at is not None
    # a dense piece (speech) right after the music decides on the wait, as before
    line = after_music([("talk", 100)])
    assert not line.d._weak(line.d.utt)
    line.run("quiet", 100)
    assert line.human_at is not None
