"""Frame-by-frame labels of the far end, with hysteresis.

Pure and causal.  For a block of 20 ms frames the cheap features are computed
at once (numpy), then a short loop runs the pieces that carry state from
frame to frame: the tone tracker and the label hysteresis.

Labels: silence, noise, ringback, busy, reorder, sit, dtmf, beep, music, speech.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .features import FRAME_MS, FeatureExtractor, compute_stacked, frame_samples
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
    active_mask: np.ndarray | None = None      # `active` as a bool array


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
        self._dips = np.zeros(self._win_n - 1)

    def process(self, frames: np.ndarray) -> FrameBlock:
        return process_stacked([self], frames[None])[0]



def process_stacked(classifiers: Sequence[FrameClassifier], frames: np.ndarray) -> list[FrameBlock]:
    """One block for each of K streams: frames (K, n, samples), stream k continuing the history of
    classifiers[k] (all with one sample rate and equal params).  The numpy work is done once for all
    K streams, row by row, so each stream's block is what its classifier alone would have said."""
    c0 = classifiers[0]
    p = c0.p
    k_streams, n = frames.shape[0], frames.shape[1]
    f = compute_stacked([c.features for c in classifiers], frames)
    e = f.energy_db.reshape(k_streams, n)

    # noise floor: quietest real frame over the recent past, clamped
    # the floor follows the level of FLOOR_SMOOTH-frame stretches, so a lost packet (a zero or,
    # after resampling, a near-zero frame) cannot drag it down
    power = np.power(10.0, e / 10.0)
    pw = np.empty((k_streams, FLOOR_SMOOTH - 1 + n), dtype=power.dtype)
    pw[:, FLOOR_SMOOTH - 1:] = power
    p_hists = [c._p_hist for c in classifiers]
    if all(h is not None for h in p_hists):
        pw[:, :FLOOR_SMOOTH - 1] = np.array(p_hists)
    else:
        for k, h in enumerate(p_hists):       # the call's first frames: no past yet
            pw[k, :FLOOR_SMOOTH - 1] = power[k, :1] if h is None else h
    smooth = 10.0 * np.log10(_rolling_mean(pw, FLOOR_SMOOTH) + 1e-10)
    e_floor = np.where(smooth < p.lost_frame_db, np.inf, smooth)
    ext = np.concatenate([_gather(classifiers, "_e_hist"), e_floor], axis=1)
    floor = sliding_window_view(ext, c0._floor_n, axis=1).min(axis=2)
    floor = np.clip(np.where(np.isinf(floor), p.floor_max_db, floor), p.floor_min_db, p.floor_max_db)
    active = (e > floor + p.active_over_floor_db) & (e > p.active_min_db)

    # speech vs music over the last window: share of dips, mean spectral flux
    win = c0._win_n
    ew = np.concatenate([_gather(classifiers, "_w_hist"), e], axis=1)
    fw = np.concatenate([_gather(classifiers, "_f_hist"),
                         np.where(active, f.flux.reshape(k_streams, n), p.flux_ref)], axis=1)
    roll_max = sliding_window_view(ew, win, axis=1).max(axis=2)
    dips = (ew[:, win - 1:] < roll_max - p.dip_db)
    dipc = np.concatenate([_gather(classifiers, "_dips"), dips.astype(np.float64)], axis=1)
    dip_share = _rolling_mean(dipc, win)
    flux_mean = _rolling_mean(fw, win)
    speech = dip_share + p.flux_weight * (flux_mean - p.flux_ref)

    codes, keys = tone_codes(f, p.tones)
    codes2 = codes.reshape(k_streams, n)
    active_flat = active.reshape(-1)
    labels = np.where(speech.reshape(-1) > p.speech_score, "speech", "music").astype(object)
    labels[f.flatness > p.noise_flatness] = "noise"
    labels[~active_flat] = "silence"

    # silent frames before each frame (for "a beep follows silence")
    base = np.array([c.index for c in classifiers])
    idx = base[:, None] + np.arange(n)
    sound_idx = np.where(active & (codes2 == NONE), idx, -1)
    last0 = np.array([c._last_sound for c in classifiers])
    last_sound = np.maximum.accumulate(np.concatenate([last0[:, None], sound_idx], axis=1), axis=1)[:, :-1]
    q = np.concatenate([_gather(classifiers, "_quiet_tail"), idx - last_sound - 1], axis=1)
    # a tone's first frame or two are partly silence: look past them
    quiet = np.maximum(np.maximum(q[:, 2:], q[:, 1:-1]), q[:, :-2])
    new_last = np.maximum(last0, sound_idx.max(axis=1)).tolist()
    has_tone = (codes2 != NONE).any(axis=1).tolist()

    # scatter the histories back, then the per-frame loop of each stream
    label_all: list[str] = labels.tolist()
    active_all = active.tolist()
    speech_all = speech.tolist()
    energy_all = e.tolist()
    flux_all = f.flux.reshape(k_streams, n).tolist()
    words_all = f.bits.reshape(k_streams, n).tolist()
    shape3 = f.shape_db.reshape(k_streams, n, -1)
    p_keep, e_keep, w_keep = FLOOR_SMOOTH - 1, c0._floor_n - 1, win - 1
    blocks: list[FrameBlock] = []
    for k, c in enumerate(classifiers):
        c._p_hist = pw[k, pw.shape[1] - p_keep:]
        c._e_hist = ext[k, ext.shape[1] - e_keep:]
        c._w_hist = ew[k, ew.shape[1] - w_keep:]
        c._f_hist = fw[k, fw.shape[1] - w_keep:]
        c._dips = dipc[k, dipc.shape[1] - w_keep:]
        c._quiet_tail = q[k, -2:]
        c._last_sound = int(new_last[k])
        start = c.index
        label_list = label_all[k * n:(k + 1) * n]
        tone_list = [False] * n
        events: list[tuple[int, ToneEvent]] = []
        tracker = c.tracker
        if has_tone[k] or tracker.code != NONE:
            code_list: list[int] = codes2[k].tolist()
            lo = k * n
            key_list = keys[lo:lo + n].tolist()
            cover = f.coverage[lo:lo + n].tolist()
            f1 = f.f1[lo:lo + n].tolist()
            quiet_list = quiet[k].tolist()
            for j in range(n):
                code = code_list[j]
                if code == NONE and tracker.code == NONE:
                    continue
                for ev in tracker.step(start + j, code, key_list[j], cover[j], f1[j], quiet_list[j]):
                    events.append((j, ev))
                if tracker.label:
                    label_list[j] = tracker.label
                    tone_list[j] = True
                elif tracker.pending():
                    label_list[j] = ""      # maybe a tone: keep the state as it is until the cadence tells
        c.index += n
        blocks.append(FrameBlock(start, label_list, active_all[k], speech_all[k], tone_list, energy_all[k],
                                 flux_all[k], words_all[k], shape3[k], events, active[k]))
    return blocks


def _gather(classifiers: Sequence[FrameClassifier], name: str) -> np.ndarray:
    """The named history of each stream, one row per stream."""
    return np.array([getattr(c, name) for c in classifiers])   # (faster than np.stack, same rows)


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of each n-long window along axis 1, windows ending at positions n-1 .. len-1 (per row,
    the same running sum as for that row alone)."""
    c = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    return (c[:, n:] - c[:, :-n]) / n


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
