"""The decision: a live person, or a recording, voicemail, SIT, busy.

Pure and causal: one step per 20 ms frame, in media time.

What tells a live person from a recording:
- turn-taking: a person says a little (an utterance of at most `max_utterance_s`)
  and waits for an answer (`wait_s` of silence, no music coming back); a
  recording runs on (IVR menus, voicemail greetings) or returns to music;
- what came before: on hold (music heard: `music_context_s` of it in a row, or
  any music after a recorded voice, `queue_guard`), a recording may be followed by a
  silent stretch of the music track, which looks exactly like a person
  waiting; there the wait decides only for a voice unlike every recording
  heard in this call (spectral-shape distance `voice_new_db`), and otherwise
  the detector waits for the person to speak again (`confirm_gap_s`; a reply
  as dense as speech, `min_density`); so does a greeting whose speech score is
  low (`weak_greeting_score`..`greeting_score`; not a piece joined to the
  music, `after_music_score`: that is the music's next phrase), or a sparse piece split off
  the music by a short pause (`after_music_density`), and a talk that followed the
  music directly with nothing recorded to compare it with (`wait_unknown_s`
  is only a last resort);
- a hand-over: on hold with no recorded voice heard yet, a talk that began well
  after the stream went quiet (`handover_gap_s`) and is followed by quiet
  (`handover_wait_s`); after a stretch of sound (`long_s`; on hold already
  `voice_change_min_s`) a short pause may hide a change of talker, which
  counts only in another voice (`voice_change_db`) and, after music, only with
  a speech score above `split_greeting_score` (the hold stream's first notes
  after an announcement are "another voice" too), and up to
  `split_weak_score` it waits for a reply; with no music heard, not
  after a stretch of clear speech (`menu_prompt_score`: an IVR menu's next
  prompt, recorded in another voice);
- a direct answer (no music heard before): a short sentence and a pause is
  also how a voicemail greeting begins; a person waits for an answer longer
  than a greeting pauses between sentences, so the wait there is
  `direct_wait_s`, or a second short utterance after a pause (a person trying
  again) followed by `second_try_wait_s`;
- music is not a person: a greeting is dense (`min_density`), not labelled
  music throughout (`max_music_share`), not the last note split off the music
  (`min_utterance_s`), not held notes (`min_shape_change`: a spectral shape
  that changes no more over 100 ms than from frame to frame, where speech
  moves its formants - plucked music the classifier calls speech), and voice
  novelty is judged only on utterances mostly
  labelled speech (`voice_music_share`); a long stretch ends a talk as music
  only if the classifier called enough of it music (`music_like_share`: an
  IVR menu read on is one talk); on hold, speech that ran back into the music
  (`tail_music_s`, `tail_music_share`) is a recording played into the stream;
- repetition: a segment that matches one heard earlier in this call or stored
  for the company (fingerprint.py) is a recording;
- what the call already taught: a decider renewed for the hold after menus
  (`inherit`) keeps the recorded voices heard, so a menu's next prompt in the
  same voice waits for a reply, as on hold, while another voice is a person;
- voicemail: a beep after a greeting, then silence;
- transcript hints, when speech-to-text runs: "how can I help" shortens the
  wait, "please hold", "leave a message" marks the utterance recorded.

Utterances are runs of sound joined across pauses shorter than `join_gap_s`;
a talk is utterances closer than `talk_gap_s` (a monologue: IVR menus and
greetings are judged as a whole).  Speech and music are told apart per
utterance by a linear score of syllable dips, spectral flux and level spread.

An early `likely_human` fires once the utterance qualifies and the silence
after it has lasted `likely_wait_s` (on hold: for a new voice, or when the
person speaks again); `human` when it has lasted `wait_s`, or on the second
utterance.  `confidence` rises with hints; voicemail's with the greeting length.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field

import numpy as np

from .features import FRAME_MS
from .fingerprint import QUERY_WORDS, FingerprintStore

FRAME_S = FRAME_MS / 1000.0
RING = 1024              # frames of spectral shape kept for voice profiles (20 s; > PROFILE_FRAMES + a block)
RECENT = 30             # finished utterances remembered (greeting before a beep)
PROFILE_FRAMES = 500     # a voice profile looks at most at the last 10 s of an utterance

POSITIVE_HINTS = (
    r"\bmy name is\b", r"\bhow (can|may) i help\b", r"\bspeaking\b", r"\bthis is \w+", r"\bhello\b",
    r"\bwho am i speaking\b", r"\bwhat can i do for you\b", r"\bthanks for holding\b", r"\bhi\b",
)
LIVE_HINTS = (           # what only a person answering says (not a greeting's opening words)
    r"\bhow (can|may) i help\b", r"\bwho am i speaking\b", r"\bwhat can i do for you\b",
)
NEGATIVE_HINTS = (
    r"\byour call is important\b", r"\bplease (hold|stay on the line)\b", r"\bleave a message\b",
    r"\bafter the (tone|beep)\b", r"\bpress \w+", r"\bfor \w+ press\b",
    r"\bcalls? (are|is) (being )?recorded\b", r"\bnext available\b", r"\bnot available\b",
    r"\bout of (the )?office\b", r"\bthank you for (holding|waiting)\b",
    r"\bestimated wait\b", r"\bnot in service\b", r"\bhas been disconnected\b",
)


@dataclass(frozen=True)
class HumanParams:
    """Decision tunables (seconds unless the name says otherwise)."""

    join_gap_s: float = 0.5          # silence shorter than this does not end an utterance
    likely_wait_s: float = 0.7       # silence after a qualifying utterance for the early signal
    wait_s: float = 1.3              # silence after a qualifying utterance for the decision
    direct_wait_s: float = 1.7       # ... when no hold music came before (a direct answer): a short first
                                     # sentence and a pause is also how voicemail greetings begin, and a
                                     # person waits for an answer longer than a greeting pauses between
                                     # sentences (spoken greetings: at most ~1.2 s as the detector sees
                                     # them; only a stretch with no audible speech in it pauses longer);
                                     # a second short utterance after a pause of at least wait_s (a
                                     # person trying again) needs only second_try_wait_s
    second_try_wait_s: float = 1.0   # (longer than the quiet between a greeting's last line and its beep,
                                     # which a second line after a long pause inside a greeting has)
    music_seen_s: float = 1.0        # music this long anywhere before: not a direct answer
    max_span_s: float = 4.3          # first to last sound of the talk, at most (a greeting, not a menu)
    min_utterance_s: float = 0.5     # active speech in the utterance, at least (a shorter piece split off
                                     # the music is its last note, not a greeting)
    max_utterance_s: float = 4.5     # ... and at most: a person says a little, a recording runs on
    dip_db: float = 15.0             # a frame this far under the recent loudest is a dip (syllable gap)
    peak_decay_db_s: float = 10.0    # the recent loudest decays this fast, dB/s (fade-outs are slower)
    # speech score of an utterance (linear, > speech_score means speech, else music): speech has
    # syllable dips, fast spectral change and a wide level spread; music is steadier on all three
    score_dip: float = 4.12          # per unit of dip share (0..1)
    score_flux: float = 70.8         # per unit of mean spectral flux (music ~0.09, speech ~0.16)
    score_level_std: float = 0.86    # per dB of level standard deviation (music ~3 dB, speech ~7.5 dB)
    score_bias: float = -15.52
    speech_score: float = 0.0        # threshold of that score
    long_s: float = 5.0              # utterances with this much sound are judged with long_speech_score
    long_speech_score: float = 3.0   # (long speech scores >= 4.7, the most speech-like music ~4)
    greeting_score: float = -2.0     # a short utterance followed by a wait needs only this much (lenient:
                                     # its few frames make the score noisy, and the wait is evidence too)
    weak_greeting_score: float = -3.0  # on hold, a score between this and greeting_score is a weak greeting:
                                     # it decides only when the line speaks again (confirm_gap_s) ...
    after_music_score: float = -2.0  # ... but not for a piece split off music by a short pause: it needs this
                                     # (the leniency is for a line after the music stopped; a piece joined
                                     # to the music that scores like music is the music's next phrase)
    greeting_min_s: float = 3.0      # speech before a beep that makes it a voicemail greeting
    greeting_window_s: float = 15.0  # ... counted over this stretch before the beep
    beep_after_speech_s: float = 3.0  # the beep comes at most this long after the greeting
    beep_silence_s: float = 0.5      # silence after the beep before calling it voicemail
    music_tail_gap_s: float = 0.3    # a pause this long ends a long piece split off music
    fragment_s: float = 0.5         # an utterance with less sound than this opening a talk is a blip
    talk_gap_s: float = 1.25         # utterances closer than this belong to one talk (greeting length)
    music_context_s: float = 3.0     # this much music means we are on hold (recordings return to it)
    queue_guard: bool = True         # music heard after a recorded voice (a menu, an announcement) is a
                                     # queue: guarded as on hold before music_context_s of music in a row
                                     # (orchestral music alternates music and speech labels and may never
                                     # give that; a live agent's first words still decide in a new voice)
    wait_unknown_s: float = 30.0     # on hold with no recorded voice to compare with, a talk that began
                                     # right after the music (no hand-over gap) decides only on a reply
                                     # or after this much quiet (a music track can open with ~9 s
                                     # too quiet to count as sound, right after an announcement)
    handover_gap_s: float = 0.7      # on hold, the line was quiet this long before the talk (the hold
                                     # stream stopped: a hand-over; a queue slots announcements into
                                     # the stream with shorter gaps) ...
    handover_wait_s: float = 1.8     # ... and stays quiet this long after a greeting: a person waiting
                                     # (only without a recorded voice to compare with; a recording is
                                     # followed by its music within ~1 s)
    voice_new_db: float = 2.2        # spectral-shape distance from every recorded voice heard: a new voice
    voice_change_db: float = 3.0     # ... from the long recording just before: another talker
    voice_change_min_s: float = 1.0  # on hold, a talk may change hands after this much sound too (the
                                     # music, or an announcement, ran on with a short pause into the
                                     # agent's first words: only another voice starts a greeting there)
    tail_music_s: float = 1.0        # on hold, a talk whose last tail_music_s of sound the classifier
    tail_music_share: float = 0.7    # called music more than this share ran back into the hold stream:
                                     # a recording (speech over or into music), not a person waiting
    music_like_share: float = 0.3    # a stretch the classifier called music for less than this share of
                                     # its sound is never music-like (an IVR menu read on: one talk)
    record_music_share: float = 0.8  # recordings remembered only if at most this share was called music
    voice_music_share: float = 0.5   # ... judged only for an utterance the classifier mostly called speech
    confirm_gap_s: tuple[float, float] = (0.7, 4.0)  # on hold: a second utterance after this pause confirms
    confirm_s: float = 0.2           # ... once this much of it sounds like speech
    confirm_score: float = 2.5       # ... and its speech score is above this (and it is as dense as a
                                     # greeting, min_density: a plucked note and its ringing is not)
    max_music_share: float = 0.9     # an utterance whose frames the classifier called music (1 s
                                     # statistics) nearly throughout is not a greeting
    min_density: float = 0.5         # sound frames / span of a greeting, at least (speech is dense; a
                                     # few notes joined across short pauses are not)
    after_music_density: float = 0.6   # after music, a piece split off it by a short pause and sparser
                                       # than this is weak (notes ringing out are the music's own end)
    min_shape_change: float = 1.08   # ratio, at least: the spectral shape's mean change (rms over the
                                     # bands, dB) between sound frames shape_lag_frames apart, over its
                                     # change between neighbouring frames.  A held or plucked note keeps its
                                     # shape (ratio ~1.0: only the frames' estimation noise differs);
                                     # speech moves its formants every 50-100 ms (>= 1.11 for every agent
                                     # in the eval sets).  Lower: not a greeting
    shape_lag_frames: int = 5        # (100 ms)
    min_shape_move_db: float = 4.5   # ... and that change over shape_lag_frames itself, at least, dB rms:
                                     # formants moving change the shape by >= 4.9 dB per 100 ms (3,600
                                     # greeting lines, both voice pools); a smooth orchestral passage less
    split_greeting_score: float = 0.0  # after music, a talk that another voice started right after a
                                     # recording or the music (a pause < talk_gap_s) scoring at most this is
                                     # weak: waits for a reply (the music's first notes after an
                                     # announcement are "another voice" too; agents there score >= 2.9)
    split_weak_score: float = 2.5    # ... and scoring at most this, weak: it decides only on a reply (the
                                     # music resuming can score like a short greeting; a reply that
                                     # confirms must score confirm_score)
    menu_prompt_score: float = 3.0   # no music heard: a long stretch scoring at least this is a recorded
                                     # menu, and another voice after a short pause is its next prompt (an
                                     # IVR strings prompts recorded by different voices), not a person
    confidence_likely: float = 0.7   # confidence reported with likely_human (0..1)
    confidence_human: float = 0.9    # ... with human
    hint_bonus_s: float = 0.6        # a positive transcript hint shortens the wait by this much (the
                                     # direct_wait_s only for live_hints: greetings open with "hi, this
                                     # is ..." too)
    positive_hints: tuple[str, ...] = POSITIVE_HINTS
    live_hints: tuple[str, ...] = LIVE_HINTS
    negative_hints: tuple[str, ...] = NEGATIVE_HINTS


@dataclass
class Decision:
    """One thing the decision machine concluded at media time t."""

    t: float
    kind: str              # likely_human, human, voicemail, sit, busy
    confidence: float
    detail: str = ""


@dataclass
class _Utterance:
    start: int = 0              # first frame
    last: int = 0               # last sound frame
    sound: int = 0              # sound frames
    peak_db: float = -100.0     # loudest recent frame (decaying: a fade-out is not a dip)
    dips: int = 0               # frames (sound or short gap) well under the loudest so far
    pending_dips: int = 0       # dips in the current gap, counted once sound resumes
    flux: float = 0.0           # sum of spectral flux over sound frames
    music: int = 0              # sound frames the classifier labelled music
    e_sum: float = 0.0          # sum and sum of squares of the sound frames' levels, dB
    e_sq: float = 0.0
    tone: bool = False          # a tone interrupted it
    repeat: bool = False        # matched a recording heard before
    hint: int = 0               # +1 positive / -1 negative transcript hint, +2 a live one
    # (an array, not a list: no object for the cyclic GC to walk through 750 times per utterance)
    words: array = field(default_factory=lambda: array("H"))   # fingerprint word per frame
    likely_sent: bool = False
    confirming: bool = False    # a second utterance after a qualifying first one (on hold)
    after_music: bool = False   # split off music by a short gap: may be the music's own end
    pending: bool = False       # qualified, waiting for a second utterance to confirm
    paused: bool = False        # direct answer: qualified and followed by wait_s of silence
    second_try: bool = False    # direct answer: follows a paused utterance (a person trying again)
    tail_music: int = 0         # bits: was each of the last sound frames labelled music (newest lowest)
    voice_before: np.ndarray | None = None   # profile of a long recording-like utterance just before
    held_at: int = -1           # last frame when `held` was computed
    held: bool = False          # its spectral shape barely moves (a held note, not speech)

    def seconds(self) -> float:
        return self.sound * FRAME_S

    def speech_score(self, p: HumanParams) -> float:
        if not self.sound:
            return p.speech_score - 1.0
        span = self.last - self.start + 1
        mean = self.e_sum / self.sound
        std = max(0.0, self.e_sq / self.sound - mean * mean) ** 0.5
        return (p.score_dip * self.dips / span + p.score_flux * self.flux / self.sound
                + p.score_level_std * std + p.score_bias)


def held_shape(shape_db: np.ndarray, active: np.ndarray, lag: int, min_change: float,
               min_move_db: float = 0.0) -> bool:
    """Frames' spectral shapes (N, bands) and whether each is sound: True when the shape's mean change
    (rms over the bands, dB) over `lag` frames is under min_change times its change between
    neighbouring frames (both frames sound), or under min_move_db.  Too few pairs, or no change at
    all, is no evidence (False)."""
    if len(shape_db) <= lag:
        return False
    x = shape_db.astype(np.float64)
    near_ok = active[1:] & active[:-1]
    far_ok = active[lag:] & active[:-lag]
    if near_ok.sum() < 2 * lag or far_ok.sum() < 2 * lag:
        return False
    near = np.sqrt(np.mean((x[1:] - x[:-1]) ** 2, axis=1))[near_ok].mean()
    far = np.sqrt(np.mean((x[lag:] - x[:-lag]) ** 2, axis=1))[far_ok].mean()
    return bool(far > 0.0 and (far < min_change * near or far < min_move_db))


class HumanDecider:
    def __init__(self, params: HumanParams | None = None, store: FingerprintStore | None = None,
                 sample_rate: int = 8000) -> None:
        self.p = params or HumanParams()
        self.store = store or FingerprintStore()
        self.sample_rate = sample_rate
        self.outcome: str | None = None
        self.likely_at: float | None = None
        self.utt: _Utterance | None = None
        self.silence = 0                 # frames of silence since the last sound
        self.talk_start = -1             # first frame of the current talk (utterances close together)
        self.talk_sound = 0              # sound frames in it
        self.talk_end = -1
        self.recent: list[_Utterance] = []   # the last few finished utterances
        self.prev_talk_s = 0.0           # the talk before the last tone (a greeting before a beep)
        self.prev_talk_end = -1
        self.beep_at = -1                # frame of a beep that may close a greeting
        self.beep_talk_s = 0.0
        self._wait = round(self.p.wait_s / FRAME_S)
        self._direct_wait = round(self.p.direct_wait_s / FRAME_S)
        self._second_wait = round(self.p.second_try_wait_s / FRAME_S)
        self._music_seen = round(self.p.music_seen_s / FRAME_S)
        self.music_seen = False          # music heard in this call (not a direct answer)
        self._tail_n = max(1, round(self.p.tail_music_s / FRAME_S))
        self._tail_mask = (1 << self._tail_n) - 1
        self._likely = round(self.p.likely_wait_s / FRAME_S)
        self._join = round(self.p.join_gap_s / FRAME_S)
        self._talk_gap = round(self.p.talk_gap_s / FRAME_S)
        self._confirm = round(self.p.confirm_s / FRAME_S)
        self._confirm_early = max(1, self._confirm // 3)
        self._decay = self.p.peak_decay_db_s * FRAME_S
        self._fragment = round(self.p.fragment_s / FRAME_S)
        self._tail_gap = round(self.p.music_tail_gap_s / FRAME_S)
        self._long = round(self.p.long_s / FRAME_S)
        self._change_min = round(self.p.voice_change_min_s / FRAME_S)
        self._wait_unknown = round(self.p.wait_unknown_s / FRAME_S)
        self._handover_gap = round(self.p.handover_gap_s / FRAME_S)
        self._handover_wait = round(self.p.handover_wait_s / FRAME_S)
        self.talk_pre = 0                # silence frames before the current talk began
        self._confirm_gap = (round(self.p.confirm_gap_s[0] / FRAME_S),
                             round(self.p.confirm_gap_s[1] / FRAME_S))
        self._music_need = round(self.p.music_context_s / FRAME_S)
        self.music_run = 0               # consecutive music frames
        self.on_hold = False             # sustained music heard in this call
        self.menus_heard = False         # recorded voices were heard before this decider started (see
                                         # inherit): a line and a pause is then judged as on hold
        self.recorded: list[np.ndarray] = []   # voice profiles of recordings heard in this call
        self.ring = np.zeros((RING, 1), dtype=np.float32)
        self.ring_active = np.zeros(RING, dtype=bool)

    def inherit(self, other: HumanDecider) -> None:
        """Carry what `other` learned about this call into this fresh decider: the recorded voices
        heard (menus, announcements) and whether music was heard.  The worker renews its detector for
        the hold after navigating menus that fooled the old one; without this the first menu replayed
        after the renewal would look like a direct answer (a short line, then a pause)."""
        self.recorded = list(other.recorded)
        self.menus_heard = other.menus_heard or bool(other.recorded)
        self.music_seen = self.music_seen or other.music_seen
        self.on_hold = self.on_hold or other.on_hold

    def _guarded(self) -> bool:
        """A recording is expected here (on hold, after menus, or music after a recorded voice: a queue
        whose music the labels never called music for music_context_s in a row): a line followed by
        quiet is a person only in a voice unlike the recordings heard, with a live hint, or when they
        speak again."""
        return self.on_hold or self.menus_heard or (self.p.queue_guard and self.music_seen
                                                    and bool(self.recorded))

    def load(self, start: int, shape_db: np.ndarray, active: np.ndarray) -> None:
        """Spectral shapes of the frames about to be stepped (at most RING // 2 of them)."""
        if self.ring.shape[1] != shape_db.shape[1]:
            self.ring = np.zeros((RING, shape_db.shape[1]), dtype=np.float32)
        lo = start % RING
        hi = lo + len(shape_db)
        if hi <= RING:            # (the usual case: one slice, no index array)
            self.ring[lo:hi] = shape_db
            self.ring_active[lo:hi] = active
            return
        idx = (start + np.arange(len(shape_db))) % RING
        self.ring[idx] = shape_db
        self.ring_active[idx] = active

    def _profile(self, u: _Utterance) -> np.ndarray | None:
        lo = max(u.start, u.last - PROFILE_FRAMES + 1)
        idx = np.arange(lo, u.last + 1) % RING
        sel = idx[self.ring_active[idx]]
        if len(sel) < 10:
            return None
        return self.ring[sel].mean(axis=0)

    def _new_voice(self, u: _Utterance) -> bool:
        prof = self._profile(u)
        if prof is None or not self.recorded or u.music > self.p.voice_music_share * u.sound:
            return False      # (the timbre of music is unlike any voice: no evidence of a new one)
        dist = min(float(np.sqrt(np.mean((prof - r) ** 2))) for r in self.recorded)
        return dist >= self.p.voice_new_db

    # -- inputs ---------------------------------------------------------------------
    def hint(self, text: str, t: float) -> int:
        """A transcript of speech heard around media time t: returns +1, -1 or 0."""
        low = text.lower()
        score = 0
        if any(re.search(h, low) for h in self.p.negative_hints):
            score = -1
        elif any(re.search(h, low) for h in self.p.positive_hints):
            score = 1
        if score and self.utt is not None:
            live = score > 0 and any(re.search(h, low) for h in self.p.live_hints)
            self.utt.hint = 2 if live else score
        return score

    def step(self, i: int, active: bool, energy_db: float, flux: float, tone: bool,
             word: int, music: bool = False, label_known: bool = True) -> Decision | None:
        """One frame: i its media index; returns a decision made at this frame, if any."""
        if self.outcome is not None:
            return None
        p = self.p
        utt = self.utt
        if music:
            self.music_run += 1
            if self.music_run >= self._music_need:
                self.on_hold = True
            if self.music_run >= self._music_seen:
                self.music_seen = True
        elif active and label_known:
            self.music_run = 0
        if tone:
            if utt is not None:
                # the frames that were waiting to be named belong to the tone: end the utterance there
                utt.tone = True
                self._finish_utterance()
                self.utt = None
            if self.talk_sound:
                self.prev_talk_s, self.prev_talk_end = self.talk_sound * FRAME_S, self.talk_end
            self.talk_start, self.talk_sound, self.talk_end = -1, 0, -1
            self.silence = 0
            return self._after_beep(i, sound=True)
        if active:
            music_split = (utt is not None and self.silence < self._join and self.silence >= 5
                           and utt.sound >= 50 and self._music_like(utt))
            # a piece split off music that has run longer than any greeting: a pause ends it
            tail_split = (utt is not None and utt.after_music and self.silence >= self._tail_gap
                          and (i - utt.start) * FRAME_S > p.max_span_s)
            if utt is None or self.silence >= self._join or music_split or tail_split:
                prev = utt
                gap = self.silence
                self._finish_utterance()
                utt = self.utt = _Utterance(start=i, after_music=music_split or tail_split)
                if prev is not None and prev.pending and self._confirm_gap[0] <= gap <= self._confirm_gap[1]:
                    utt.confirming = True
                if prev is not None and prev.paused and not self.music_seen:
                    utt.second_try = True
                if (self.talk_end < 0 or i - self.talk_end > self._talk_gap
                        or (prev is not None and (prev.tone or prev.after_music
                                                  or self._music_like(prev)))):
                    self.talk_start, self.talk_sound = i, 0
                    self.talk_pre = gap
                elif (prev is not None and not prev.tone
                      and (prev.sound >= self._long or (self.on_hold and prev.sound >= self._change_min))
                      and (self.music_seen or prev.speech_score(p) < p.menu_prompt_score)):
                    # after a long stretch (a recording, speech-like music) a short pause may hide a
                    # change of talker: a new talk, that counts only in another voice (see _qualifies)
                    utt.voice_before = self._profile(prev)
                    if utt.voice_before is not None:
                        self.talk_start, self.talk_sound = i, 0
                        self.talk_pre = gap
                elif prev is not None and prev.start == self.talk_start and prev.sound < self._fragment:
                    # a blip (a click, the last note of the music) does not start a talk
                    self.talk_start, self.talk_sound = i, max(0, self.talk_sound - prev.sound)
            utt.sound += 1
            utt.last = i
            if music:
                utt.music += 1
            utt.tail_music = ((utt.tail_music << 1) | int(music)) & self._tail_mask
            utt.flux += flux
            utt.e_sum += energy_db
            utt.e_sq += energy_db * energy_db
            utt.peak_db = max(energy_db, utt.peak_db - self._decay)
            if energy_db < utt.peak_db - p.dip_db:
                utt.dips += 1
            utt.dips += utt.pending_dips
            utt.pending_dips = 0
            if len(utt.words) < 750:
                utt.words.append(word)
            if len(utt.words) == QUERY_WORDS and self.store.is_repeat(np.array(utt.words, dtype=np.uint16)):
                utt.repeat = True
            self.talk_sound += 1
            self.talk_end = i
            self.silence = 0
            if (utt.confirming and utt.sound >= self._confirm and not utt.tone and not utt.repeat
                    and utt.speech_score(p) > p.confirm_score
                    and utt.sound >= p.min_density * (i - utt.start + 1)):
                self.outcome = "human"
                return Decision(self._t(i), "human", p.confidence_human, "turn-taking confirmed")
            if utt.confirming and utt.sound == self._confirm_early and self.likely_at is None:
                self.likely_at = self._t(i)     # someone speaks again after waiting: likely a person
                return Decision(self._t(i), "likely_human", p.confidence_likely, "second utterance")
            return self._after_beep(i, sound=True)
        self.silence += 1
        if utt is not None:
            utt.peak_db -= self._decay
            if energy_db < utt.peak_db - p.dip_db:
                utt.pending_dips += 1
            if len(utt.words) < 750:
                utt.words.append(word)
        d = self._after_beep(i, sound=False)
        if d is not None:
            return d
        if utt is None or not self._qualifies(utt):
            return None
        if self.music_seen:
            base = self._wait
        elif utt.second_try:
            base = self._second_wait
        else:
            base = self._direct_wait
            if self.silence == self._wait:
                utt.paused = True
        if utt.hint > 1 or (utt.hint > 0 and base != self._direct_wait):
            # (not on a direct answer: "hi, this is ..." opens voicemail greetings as often as calls)
            base -= round(p.hint_bonus_s / FRAME_S)
        wait = base
        weak = self._weak(utt)
        if self.silence == self._likely and not utt.likely_sent and not weak:
            utt.likely_sent = True
            # on hold, only a voice unlike the recordings heard is likely a person this early
            if self.likely_at is None and (not self._guarded() or utt.hint > 0 or self._new_voice(utt)):
                self.likely_at = self._t(i)
                return Decision(self._t(i), "likely_human", p.confidence_likely)
        if (utt.pending and self.silence == self._handover_wait and not self.recorded and not weak
                and self.talk_pre >= self._handover_gap):
            # the hold stream went quiet before this voice and stays quiet after it: a hand-over
            self.outcome = "human"
            return Decision(self._t(i), "human", p.confidence_human, "hold stream stopped")
        if self.silence >= wait and (not utt.pending or self.silence == self._wait_unknown):
            if weak or (self._guarded() and utt.hint <= 0 and not self._new_voice(utt)
                        and (self.recorded or self.silence < self._wait_unknown)):
                # on hold a recording may be followed by a silent stretch of music: wait for a reply
                utt.pending = True
                return None
            self.outcome = "human"
            conf = min(0.99, p.confidence_human + (0.05 if utt.hint > 0 else 0.0))
            return Decision(self._t(i), "human", conf)
        return None

    def tone_event(self, i: int, kind: str) -> Decision | None:
        """A tone the tracker recognised at frame i."""
        if self.outcome is not None:
            return None
        if kind == "sit":
            self.outcome = "sit"
            return Decision(self._t(i), "sit", 0.95)
        if kind in ("busy", "reorder"):
            self.outcome = "busy"
            return Decision(self._t(i), "busy", 0.95, kind)
        if kind == "beep":
            # a greeting: enough speech in the stretch before the beep, ending shortly before it
            since = i - round(self.p.greeting_window_s / FRAME_S)
            talk = sum(min(u.sound, u.last - since) for u in self.recent if u.last > since and not u.tone)
            talk_s = max(talk * FRAME_S, self.prev_talk_s)
            end = max([u.last for u in self.recent] + [self.prev_talk_end])
            gap = (i - end) * FRAME_S if end >= 0 else 1e9
            if talk_s >= self.p.greeting_min_s and gap <= self.p.beep_after_speech_s + 2.0:
                self.beep_at, self.beep_talk_s = i, talk_s
        return None

    def prompt_ended(self, min_silence_s: float) -> bool:
        """Speech was heard and has been followed by at least min_silence_s of silence."""
        return self.utt is not None and self.utt.sound > 0 and self.silence * FRAME_S >= min_silence_s

    # -- internals --------------------------------------------------------------------
    def _after_beep(self, i: int, sound: bool) -> Decision | None:
        if self.beep_at < 0:
            return None
        if sound and i - self.beep_at > 3:
            self.beep_at = -1        # something other than silence followed: not a mailbox beep
            return None
        if not sound and (i - self.beep_at) * FRAME_S >= self.p.beep_silence_s:
            self.outcome = "voicemail"
            conf = min(0.95, 0.6 + 0.05 * self.beep_talk_s)
            return Decision(self._t(i), "voicemail", conf)
        return None

    def _music_like(self, u: _Utterance) -> bool:
        """Music, not speech: a low score; over a long stretch the score must be clearly high
        (long speech - menus, greetings - scores far above the few speech-like passages of music).
        Never a stretch the classifier mostly called speech (`music_like_share`): a steady IVR voice."""
        if u.music < self.p.music_like_share * u.sound:
            return False
        score = u.speech_score(self.p)
        if u.sound >= self._long:
            return score < self.p.long_speech_score
        return score <= self.p.speech_score

    def _other_voice(self, u: _Utterance, before: np.ndarray) -> bool:
        prof = self._profile(u)
        if prof is None or u.music > self.p.voice_music_share * u.sound:
            return False
        return float(np.sqrt(np.mean((prof - before) ** 2))) >= self.p.voice_change_db

    def _ends_in_music(self, u: _Utterance) -> bool:
        """Speech that ran into music: at least tail_music_s of sound mostly not called music, then a
        last tail_music_s mostly called music.  (A person's short greeting right after the music
        stopped may be called music throughout - the labels use 1 s statistics - and is not this.)"""
        n = self._tail_n
        if u.sound < 2 * n:
            return False
        tail = u.tail_music.bit_count()
        return tail > self.p.tail_music_share * n and u.music - tail <= 0.5 * (u.sound - n)

    def _mostly_music(self, u: _Utterance) -> bool:
        return u.music > self.p.max_music_share * u.sound

    def _qualifies(self, u: _Utterance) -> bool:
        p = self.p
        if u.tone or u.repeat or u.hint < 0 or (self._mostly_music(u) and u.hint <= 0):
            return False
        talk_span = (u.last - self.talk_start + 1) * FRAME_S
        if (self.talk_sound * FRAME_S > p.max_utterance_s or talk_span > p.max_span_s) and u.hint <= 0:
            return False      # the end of a monologue (IVR menu, greeting), not a greeting and a wait
        if u.voice_before is not None and not self._other_voice(u, u.voice_before):
            return False      # the long stretch before it, running on
        if (u.voice_before is not None and self.music_seen and u.hint <= 0
                and u.speech_score(p) <= p.split_greeting_score):
            return False      # the hold stream resuming after a recording (its first notes: "another voice")
        if self.on_hold and self._ends_in_music(u):
            return False      # speech that ran back into the hold stream: a recording
        secs = u.seconds()
        if u.sound < p.min_density * (u.last - u.start + 1) and u.hint <= 0:
            return False
        if u.hint > 0:
            return secs >= p.min_utterance_s
        floor = p.greeting_score
        if self.on_hold:
            floor = p.after_music_score if u.after_music else p.weak_greeting_score
        return (p.min_utterance_s <= secs <= p.max_utterance_s and u.speech_score(p) > floor
                and not self._held(u))

    def _held(self, u: _Utterance) -> bool:
        """Its spectral shape changes no more over shape_lag_frames than from frame to frame: held
        notes, not formants moving.  Computed once per pause (O(utterance), not per frame)."""
        if u.held_at != u.last:
            u.held_at = u.last
            lo = max(u.start, u.last - PROFILE_FRAMES + 1)
            idx = np.arange(lo, u.last + 1) % RING
            u.held = held_shape(self.ring[idx], self.ring_active[idx], self.p.shape_lag_frames,
                                self.p.min_shape_change, self.p.min_shape_move_db)
        return u.held

    def _weak(self, u: _Utterance) -> bool:
        """After music, a greeting that only a reply confirms: on hold one whose speech score is low (a
        short greeting's few frames make the score noisy, and the end of a piece of music scores as
        low), a sparse piece split off the music by a short pause (its last notes ringing out), or
        another voice right after a recording that is not clearly speech (the music resuming)."""
        if u.hint > 0 or not self.music_seen:
            return False
        sparse = u.after_music and u.sound < self.p.after_music_density * (u.last - u.start + 1)
        score = u.speech_score(self.p)
        split = u.voice_before is not None and score <= self.p.split_weak_score
        return sparse or split or (self.on_hold and score <= self.p.greeting_score)

    def _finish_utterance(self) -> None:
        u = self.utt
        if u is None:
            return
        if u.sound:
            self.recent.append(u)
            del self.recent[:-RECENT]
        # long speech, or speech that ran into music, is a recording: remember it
        if (u.sound * FRAME_S >= 1.0 and u.speech_score(self.p) > self.p.speech_score
                and u.music <= self.p.record_music_share * u.sound):
            self.store.add(np.array(u.words, dtype=np.uint16), "announcement", self.sample_rate)
            prof = self._profile(u)
            if prof is not None:
                self.recorded.append(prof)
                del self.recorded[:-20]

    def _t(self, i: int) -> float:
        return round((i + 1) * FRAME_S, 3)
