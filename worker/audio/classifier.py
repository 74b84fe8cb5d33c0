"""Frame-by-frame labels of the far end, with hysteresis.

Pure and causal.  For a block of 20 ms frames the cheap features are computed
at once (numpy), then a short loop runs the pieces that carry state from
frame to frame: the tone tracker and the label hysteresis.

Labels: silence, noise, ringback, busy, reorder, sit, dtmf, beep, music, speech.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .features import FRAME_MS, FeatureExtractor, frame_samples
from .tones import NONE, ToneEvent, ToneParams, ToneTracker, tone_codes

FLOOR_SMOOTH = 3       # frames averaged before taking the noise floor (60 ms)
LABELS = ("silence", "noise", "ringback", "busy", "reorder", "sit", "dtmf", "beep", "music", "speech")


@dataclass(frozen=True)
class ClassifierParams:
    """Classifier tunables (units in the names)."""

    floor_window_s: float = 8.0        # noise floor = quietest frame of this long a past, dBFS
    floor_min_db: float = -75.0        # floor clamp: never assume a line quieter than this, dBFS
    floor_max_db: float = -45.0        # ... nor noisier than this (music must not become the floor)
    active_over_floor_db: float = 7.0  # a frame this far above the floor carries sound
    active_min_db: float = -58.0       # and is at least this loud, dBFS
    lost_frame_db: float = -90.0       # quieter than this is a lost packet or digital zero, not the floor
    noise_flatness: float = 0.75       # flatter than this (0..1) is noise, not music or speech
    window_s: float = 1.0              # speech/music statistics window, s
    dip_db: float = 15.0               # a frame this far under the window's loudest is a dip (syllable gap)
    flux_ref: float = 0.12             # spectral flux between music (~0.09) and speech (~0.16)
    flux_weight: float = 2.5           # speech score = dip share + flux_weight * (mean flux - flux_ref)
    speech_score: float = 0.2          # speech score above this is speech, below it music
    hold_frames: dict[str, int] = field(default_factory=lambda: {
        "silence": 15, "noise": 15, "music": 15, "speech": 8})   # frames a label must last to become state
    tones: ToneParams = field(default_factory=ToneParams)


@dataclass
class FrameBlock:
    """What the classifier says about a block of frames (lists, one entry per frame)."""

    start: int                     # media index of the first frame
    labels: list[str]              # raw label per frame
    active: list[bool]             # carries sound (not silence, not a lost packet)
    speech: list[float]            # speech score over the last window (higher = speech)
    tone: list[bool]               # inside a recognised tone (ringback, busy, sit, dtmf, beep)
    energy_db: list[float]
    flux: list[float]
    words: list[int]               # fingerprint word per frame
    shape_db: np.ndarray           # (N, bands) spectral shape per frame (voice profiles)
    tone_events: list[tuple[int, ToneEvent]]   # (frame index in block, event)


class FrameClassifier:
    def __init__(self, sample_rate: int = 8000, params: ClassifierParams | None = None) -> None:
        self.p = params or ClassifierParams()
        self.sample_rate = sample_rate
        self.samples = frame_samples(sample_rate)
        self.features = FeatureExtractor(sample_rate, tonal_threshold=self.p.tones.min_tonality)
        self.tracker = ToneTracker(self.p.tones)
        self.index = 0                                   # frames processed so far
        self._last_sound = -1                            # index of the last sound (non-tone) frame
        self._quiet_tail = np.zeros(2, dtype=np.int64)
        self._floor_n = int(self.p.floor_window_s * 1000 / FRAME_MS)
        self._win_n = int(self.p.window_s * 1000 / FRAME_MS)
        self._e_hist = np.full(self._floor_n - 1, np.inf)
        self._p_hist: np.ndarray | None = None
        self._w_hist = np.full(self._win_n - 1, -100.0)
        self._f_hist = np.zeros(self._win_n - 1)

    def process(self, frames: np.ndarray) -> FrameBlock:
        p = self.p
        f = self.features.compute(frames)
        n = len(f)
        e = f.energy_db

        # noise floor: quietest real frame over the recent past, clamped
        # the floor follows the level of FLOOR_SMOOTH-frame stretches, so a lost packet (a zero or,
        # after resampling, a near-zero frame) cannot drag it down
        power = np.power(10.0, e / 10.0)
        if self._p_hist is None:                       # the call's first frames: no past yet
            self._p_hist = np.repeat(power[:1], FLOOR_SMOOTH - 1)
        pw = np.concatenate([self._p_hist, power])
        self._p_hist = pw[len(pw) - (FLOOR_SMOOTH - 1):]
        smooth = 10.0 * np.log10(_rolling_mean(pw, FLOOR_SMOOTH) + 1e-10)
        e_floor = np.where(smooth < p.lost_frame_db, np.inf, smooth)
        ext = np.concatenate([self._e_hist, e_floor])
        floor = _rolling_min(ext, self._floor_n)
        floor = np.clip(np.where(np.isinf(floor), p.floor_max_db, floor), p.floor_min_db, p.floor_max_db)
        self._e_hist = ext[len(ext) - len(self._e_hist):]
        active = (e > floor + p.active_over_floor_db) & (e > p.active_min_db)

        # speech vs music over the last window: share of dips, mean spectral flux
        ew = np.concatenate([self._w_hist, e])
        fw = np.concatenate([self._f_hist, np.where(active, f.flux, p.flux_ref)])
        roll_max = sliding_window_view(ew, self._win_n).max(axis=1)
        dips = (ew[self._win_n - 1:] < roll_max - p.dip_db)
        dipc = np.concatenate([self._dip_hist(), dips.astype(np.float64)])
        dip_share = _rolling_mean(dipc, self._win_n)
        flux_mean = _rolling_mean(fw, self._win_n)
        self._w_hist = ew[len(ew) - len(self._w_hist):]
        self._f_hist = fw[len(fw) - len(self._f_hist):]
        self._dips = dipc[len(dipc) - (self._win_n - 1):]
        speech = dip_share + p.flux_weight * (flux_mean - p.flux_ref)

        codes, keys = tone_codes(f, p.tones)
        labels = np.where(speech > p.speech_score, "speech", "music").astype(object)
        labels[f.flatness > p.noise_flatness] = "noise"
        labels[~active] = "silence"

        label_list: list[str] = labels.tolist()
        code_list: list[int] = codes.tolist()
        key_list = keys.tolist()
        power = f.coverage.tolist()
        f1 = f.f1.tolist()
        tracker = self.tracker
        events: list[tuple[int, ToneEvent]] = []
        base = self.index
        tone_list = [False] * n
        # silent frames before each frame (for "a beep follows silence")
        idx = np.arange(base, base + n)
        sound_idx = np.where(active & (codes == NONE), idx, -1)
        last_sound = np.maximum.accumulate(np.concatenate([[self._last_sound], sound_idx]))[:-1]
        q = np.concatenate([self._quiet_tail, idx - last_sound - 1])
        self._quiet_tail = q[-2:]
        # a tone's first frame or two are partly silence: look past them
        quiet = np.maximum(np.maximum(q[2:], q[1:-1]), q[:-2]).tolist()
        self._last_sound = int(max(self._last_sound, sound_idx.max(initial=-1)))
        for j in range(n):
            c = code_list[j]
            if c == NONE and tracker.code == NONE:
                continue
            for ev in tracker.step(base + j, c, key_list[j], power[j], f1[j], quiet[j]):
                events.append((j, ev))
            if tracker.label:
                label_list[j] = tracker.label
                tone_list[j] = True
            elif tracker.pending():
                label_list[j] = ""      # maybe a tone: keep the state as it is until the cadence tells
        self.index += n
        return FrameBlock(base, label_list, active.tolist(), speech.tolist(), tone_list, e.tolist(),
                          f.flux.tolist(), f.bits.tolist(), f.shape_db, events)

    def _dip_hist(self) -> np.ndarray:
        return getattr(self, "_dips", np.zeros(self._win_n - 1))


def _rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    """Min of each n-long window ending at positions n-1 .. len-1."""
    return sliding_window_view(x, n).min(axis=1)


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(x)])
    return (c[n:] - c[:-n]) / n


class Hysteresis:
    """The state shown to the world: a raw label must last `hold_frames` to replace it."""

    def __init__(self, hold: dict[str, int], default_hold: int = 3) -> None:
        self.hold = hold
        self.default_hold = default_hold
        self.state = "silence"
        self._cand = "silence"
        self._count = 0

    def step(self, label: str) -> bool:
        """Feed one raw label ('' = undecided, changes nothing); True when the state changed."""
        if not label:
            return False
        if label == self.state:
            self._count = 0
            self._cand = label
            return False
        if label == self._cand:
            self._count += 1
        else:
            self._cand, self._count = label, 1
        if self._count >= self.hold.get(label, self.default_hold):
            self.state = label
            self._count = 0
            return True
        return False
