"""Call-progress tones, SIT, DTMF and beeps: frequency tests per frame, cadence over time.

Pure.  `tone_codes` names the tone family of each frame from its spectral
peaks (vectorised); `ToneTracker` groups frames into bursts and recognises the
cadences (ringback, busy, reorder, SIT sequence, DTMF digits, beeps) frame by
frame, in media time.

Frequencies and tolerances (Hz, seconds, dB):
- ringback: North America 440+480 Hz 2 s on / 4 s off, UK 400+450 Hz
  .4/.2/.4/2, Europe 425 Hz 1 s / 4 s.  One burst >= 0.7 s, or the UK double
  burst, is ringback.
- busy 480+620 Hz .5/.5 (UK 400 Hz .375/.375, Europe 425 Hz .5/.5), reorder
  480+620 Hz .25/.25: at least BUSY_BURSTS regular bursts.
- SIT: 913.8 or 985.2 Hz, then 1370.6 or 1428.5 Hz (274 or 380 ms each), then
  1776.7 Hz (380 ms).
- DTMF (ITU-T Q.24): each tone within 2.5 % of nominal (accept 1.5 %, reject
  3.5 %), twist high-low between -8 and +4 dB, at least 40 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import DTMF_MIN_TONALITY, FRAME_MS, Features

# tone codes per frame
NONE, LOW, DTMF, SIT_A, SIT_B, SIT_C, SINGLE = 0, 1, 2, 3, 4, 5, 6

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
SIT_A_HZ = (913.8, 985.2)
SIT_B_HZ = (1370.6, 1428.5)
SIT_C_HZ = (1776.7,)

FRAME_S = FRAME_MS / 1000.0


@dataclass(frozen=True)
class ToneParams:
    """Tone tunables (units in the names)."""

    min_tonality: float = 0.9          # share of band power in two peaks for a tone frame
    min_level_db: float = -50.0        # tones quieter than this (dBFS) are ignored
    dtmf_tolerance: float = 0.025      # relative frequency deviation accepted (Q.24: 1.5 % yes, 3.5 % no)
    dtmf_twist_fwd_db: float = 4.0     # high tone at most this much louder than the low tone
    dtmf_twist_rev_db: float = 8.0     # low tone at most this much louder than the high tone
    dtmf_min_ms: float = 40.0          # shortest digit accepted (energy-weighted duration, see below)
    dtmf_min_effective: float = 0.8    # accept when covered duration >= this share of dtmf_min_ms
                                       # (covered: sum of the frames' coverage, so 40 ms passes at any
                                       # alignment and 20 ms fails at any alignment)
    sit_tolerance: float = 0.015       # SIT frequencies, relative
    single_second_db: float = -15.0    # a single tone has its second peak at least this far down
    low_tone_hz: tuple[float, float] = (330.0, 660.0)   # call-progress tones (ringback, busy, reorder)
    ringback_min_s: float = 0.7        # one burst this long is ringback
    uk_burst_s: float = 0.3            # after a ringback, bursts this long are ringback too
    steady_tonality: float = 0.95      # ringback, busy and beeps are purer than voiced speech or most notes
    cadence_short_s: tuple[float, float] = (0.15, 0.7)  # busy/reorder on and off times
    reorder_max_on_s: float = 0.35     # bursts shorter than this are reorder, longer busy
    busy_bursts: int = 4               # regular bursts before calling it busy
    sit_burst_s: tuple[float, float] = (0.15, 0.5)
    sit_gap_s: float = 0.12            # silence allowed between SIT segments
    beep_s: tuple[float, float] = (0.08, 1.6)
    beep_stability: float = 0.015      # relative spread of a beep's frequency
    beep_quiet_before_frames: int = 8  # a beep starts after this much silence (a greeting ended)
    dropout_frames: int = 2            # frames of a burst that may be lost (packet loss) without ending it


def tone_codes(f: Features, p: ToneParams) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: tone family code and DTMF key index (-1 when none)."""
    n = len(f)
    codes = np.zeros(n, dtype=np.int8)
    keys = np.full(n, -1, dtype=np.int16)
    loud = f.energy_db > p.min_level_db
    tonal = (f.tonality >= p.min_tonality) & loud
    if not (loud & (f.tonality >= DTMF_MIN_TONALITY)).any():
        return codes, keys
    single = tonal & (f.level2_db < p.single_second_db)
    lo = np.minimum(f.f1, f.f2)
    hi = np.maximum(f.f1, f.f2)

    # DTMF: both peaks present, each near a nominal row / column
    row = _nearest(lo, DTMF_ROWS, p.dtmf_tolerance)
    col = _nearest(hi, DTMF_COLS, p.dtmf_tolerance)
    # twist: level of high tone minus low tone
    hi_is_first = f.f1 > f.f2
    twist = np.where(hi_is_first, -f.level2_db, f.level2_db)
    dual = loud & (f.tonality >= DTMF_MIN_TONALITY) & (f.level2_db >= -p.dtmf_twist_rev_db - 1.0)
    ok_twist = (twist <= p.dtmf_twist_fwd_db) & (twist >= -p.dtmf_twist_rev_db)
    dtmf = dual & (row >= 0) & (col >= 0) & ok_twist
    codes[dtmf] = DTMF
    keys[dtmf] = row[dtmf] * 4 + col[dtmf]

    rest = tonal & ~dtmf
    f1 = f.f1
    codes[rest & single & (_nearest(f1, SIT_A_HZ, p.sit_tolerance) >= 0)] = SIT_A
    codes[rest & single & (_nearest(f1, SIT_B_HZ, p.sit_tolerance) >= 0)] = SIT_B
    codes[rest & single & (_nearest(f1, SIT_C_HZ, p.sit_tolerance) >= 0)] = SIT_C
    in_low = (f1 >= p.low_tone_hz[0]) & (f1 <= p.low_tone_hz[1])
    pair_low = (lo >= p.low_tone_hz[0]) & (hi <= p.low_tone_hz[1] * 1.05)
    steady = f.tonality >= p.steady_tonality
    low = rest & steady & in_low & (single | pair_low)
    codes[low & (codes == NONE)] = LOW
    codes[rest & steady & single & (codes == NONE) & (f1 > 300.0)] = SINGLE
    return codes, keys


def _nearest(freq: np.ndarray, nominal: tuple[float, ...], tol: float) -> np.ndarray:
    """Index of the nominal frequency within `tol` (relative) of each value, else -1."""
    nom = np.asarray(nominal)
    dev = np.abs(freq[:, None] / nom[None, :] - 1.0)
    idx = np.argmin(dev, axis=1)
    return np.where(dev[np.arange(len(freq)), idx] <= tol, idx, -1)


@dataclass
class ToneEvent:
    t: float          # media seconds at which it was recognised
    kind: str         # ringback, busy, reorder, sit, dtmf, beep
    detail: str = ""  # the DTMF key, or the beep frequency


class ToneTracker:
    """Bursts and cadences, one frame at a time (call `step` for every frame)."""

    def __init__(self, params: ToneParams | None = None) -> None:
        self.p = params or ToneParams()
        self.code = NONE          # code of the open burst
        self.key = -1
        self.start = 0            # frame index where it started
        self.quiet_before = 0     # silent frames just before it started
        self.length = 0           # frames with the tone
        self.missing = 0          # frames lost since the last tone frame
        self.power_sum = 0.0      # frames covered by the tone (sum of coverage)
        self.freqs: list[float] = []
        self.bursts: list[tuple[int, int, int]] = []    # (code, start frame, frames) of finished bursts
        self.state = ""           # last cadence verdict: ringback / busy / reorder
        self._dtmf_sent = False
        self.label = ""           # name of the open burst when certain (see _label)

    def step(self, i: int, code: int, key: int, coverage: float, f1: float,
             quiet_before: int = 0) -> list[ToneEvent]:
        """Frame i (media index) with its tone code; returns events recognised at this frame."""
        events: list[ToneEvent] = []
        if code != NONE and code == self.code and (code != DTMF or key == self.key):
            self.length += 1 + self.missing
            self.missing = 0
            self.power_sum += coverage
            if len(self.freqs) < 100:
                self.freqs.append(f1)
        elif self.code != NONE and code == NONE and self.missing < self.p.dropout_frames:
            self.missing += 1
            return events
        elif self.code != NONE and code != NONE and self.label and code != self.code and self.missing == 0:
            # a different tone inside a burst: treat one stray frame like a lost one
            self.missing += 1
            return events
        else:
            if self.code != NONE:
                events += self._close(i)
            if code != NONE:
                self.code, self.key, self.start, self.length, self.missing = code, key, i, 1, 0
                self.quiet_before = quiet_before
                self.power_sum = coverage
                self.freqs = [f1]
                self._dtmf_sent = False
        self.label = self._label()
        if self.code == DTMF and not self._dtmf_sent:
            effective_ms = self.power_sum * FRAME_MS
            if effective_ms >= self.p.dtmf_min_ms * self.p.dtmf_min_effective and self.length >= 2:
                self._dtmf_sent = True
                events.append(ToneEvent(self._t(i), "dtmf", DTMF_KEYS[self.key // 4][self.key % 4]))
        if self.label == "ringback" and self.state != "ringback":
            self.state = "ringback"
            events.append(ToneEvent(self._t(i), "ringback"))
        return events

    def _label(self) -> str:
        """Label of the open burst once it is certain enough to name, else ''."""
        code, n = self.code, self.length
        if code == NONE:
            return ""
        if code == DTMF:
            return "dtmf" if n >= 2 else ""
        if code in (SIT_A, SIT_B, SIT_C):
            return "sit" if n >= 5 else ""
        # a low pair 40-50 Hz apart beats inside a 20 ms frame: its peak wanders by up to ~8 %
        if n < 5 or not self._stable(0.1 if code == LOW else self.p.beep_stability):
            return ""
        if code == LOW:
            if self.state in ("busy", "reorder"):
                return self.state
            # a burst is ringback when long enough, or (after a ringback) as long as a UK burst
            need = self.p.uk_burst_s if self.state == "ringback" else self.p.ringback_min_s
            return "ringback" if n * FRAME_S >= need else ""
        quiet = self.quiet_before >= self.p.beep_quiet_before_frames
        return "beep" if quiet and n * FRAME_S <= self.p.beep_s[1] else ""

    def pending(self) -> bool:
        """An open burst that may still become a named tone (steady so far)."""
        return self.code in (LOW, SINGLE) and self.length >= 2 and self._stable(0.1)

    def _stable(self, tol: float) -> bool:
        fr = self.freqs[1:] if len(self.freqs) > 2 else self.freqs
        med = sorted(fr)[len(fr) // 2]
        return med > 0 and max(abs(x / med - 1.0) for x in fr) <= tol

    def flush(self, i: int) -> list[ToneEvent]:
        return self._close(i) if self.code != NONE else []

    def _t(self, i: int) -> float:
        return round((i + 1) * FRAME_S, 3)

    def _close(self, i: int) -> list[ToneEvent]:
        events: list[ToneEvent] = []
        code, start, length = self.code, self.start, self.length
        self.code, self.key, self.missing = NONE, -1, 0
        self.bursts.append((code, start, length))
        del self.bursts[:-12]
        dur = length * FRAME_S
        p = self.p
        self.label = ""
        if code == SINGLE and p.beep_s[0] <= dur <= p.beep_s[1] and self.freqs:
            fr = np.asarray(self.freqs[1:-1] or self.freqs)
            med = float(np.median(fr))
            if med > 0 and float(np.max(np.abs(fr / med - 1.0))) <= p.beep_stability:
                if self.quiet_before >= p.beep_quiet_before_frames:    # a note in music is not a beep
                    events.append(ToneEvent(self._t(i), "beep", f"{med:.0f}"))
        elif code == LOW:
            events += self._cadence(i)
        elif code == SIT_C and p.sit_burst_s[0] <= dur <= p.sit_burst_s[1] * 1.3:
            if self._sit_sequence():
                events.append(ToneEvent(self._t(i), "sit"))
        return events

    def _cadence(self, i: int) -> list[ToneEvent]:
        p = self.p
        lows = [b for b in self.bursts if b[0] == LOW]
        if len(lows) >= 2:  # UK ringback: .4 on, .2 off, .4 on, 2 off
            a, b = lows[-2:]
            gap = (b[1] - a[1] - a[2]) * FRAME_S
            if 0.3 <= a[2] * FRAME_S <= 0.5 and 0.3 <= b[2] * FRAME_S <= 0.5 and 0.12 <= gap <= 0.3:
                if self.state != "ringback":
                    self.state = "ringback"
                    return [ToneEvent(self._t(i), "ringback")]
        run = lows[-p.busy_bursts:]
        if len(run) < p.busy_bursts:
            return []
        ons = [b[2] * FRAME_S for b in run]
        offs = [(y[1] - x[1] - x[2]) * FRAME_S for x, y in zip(run, run[1:], strict=False)]
        lo, hi = p.cadence_short_s
        if not all(lo <= v <= hi for v in ons + offs):
            return []
        if max(ons) - min(ons) > 0.15 or max(offs) - min(offs) > 0.15:
            return []
        kind = "reorder" if np.mean(ons) < p.reorder_max_on_s else "busy"
        if self.state == kind:
            return []
        self.state = kind
        return [ToneEvent(self._t(i), kind)]

    def _sit_sequence(self) -> bool:
        p = self.p
        if len(self.bursts) < 3:
            return False
        a, b, c = self.bursts[-3:]
        if (a[0], b[0], c[0]) != (SIT_A, SIT_B, SIT_C):
            return False
        for x in (a, b):
            if not p.sit_burst_s[0] <= x[2] * FRAME_S <= p.sit_burst_s[1]:
                return False
        gaps = [(b[1] - a[1] - a[2]) * FRAME_S, (c[1] - b[1] - b[2]) * FRAME_S]
        return all(g <= p.sit_gap_s for g in gaps)
