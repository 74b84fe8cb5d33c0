"""Per-frame acoustic features, computed for a block of 20 ms frames at once.

Pure: numpy in, numpy out.  Every feature of frame i depends only on frame i
and the frames before it (the extractor keeps the little history it needs), so
feeding a recording in one block or frame by frame gives the same numbers.

Cheap features are computed for every frame (energy, a 256-point spectrum at
8 kHz, peak tonality, spectral flux, flatness).  The expensive one, a fine
spectrum for exact tone frequencies, is computed only for frames the cheap
ones call tonal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FRAME_MS = 20
SUPPORTED_RATES = (8000, 16000)
BAND_LO_HZ = 250.0        # the telephone band we look at, Hz
BAND_HI_HZ = 3600.0
DTMF_LOW_BAND = (640.0, 1000.0)    # where DTMF row tones may lie, Hz (with margin)
DTMF_HIGH_BAND = (1130.0, 1720.0)  # column tones, Hz
DTMF_MIN_TONALITY = 0.75  # a DTMF frame partly filled (onset click) is still this tonal
FP_SPAN = 3               # frames summed for a fingerprint word (60 ms, hop 20 ms)
FP_LAG = 2                # frames between the two smoothed spectra a word compares
FP_BANDS = 17             # fingerprint bands (16 difference bits per frame)
FINE_BIN_HZ = 4.0         # resolution of the fine spectrum used for tone frequencies, Hz


def frame_samples(sample_rate: int) -> int:
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"sample rate must be 8000 or 16000 Hz, got {sample_rate}")
    return sample_rate * FRAME_MS // 1000


@dataclass
class Features:
    """Arrays with one value per frame."""

    energy_db: np.ndarray     # mean square power, dB re full scale (-100 for digital silence)
    tonality: np.ndarray      # share of band power in the two strongest spectral peaks, 0..1
    purity: np.ndarray        # share of band power in the strongest peak alone, 0..1
    flux: np.ndarray          # spectral change against the previous frame, 0 (same) .. 1 (unrelated)
    flatness: np.ndarray      # spectral flatness over the FP_BANDS bands, 0 (tonal) .. 1 (white)
    f1: np.ndarray            # frequency of the strongest peak, Hz (interpolated; exact for DTMF-like)
    f2: np.ndarray            # frequency of the second peak, Hz
    level2_db: np.ndarray     # level of the second peak relative to the first, dB (<= 0)
    bits: np.ndarray          # 16-bit spectro-temporal fingerprint word per frame (see fingerprint.py)
    coverage: np.ndarray      # share of the frame's quarters with at least 30 % of the loudest one's energy
    shape_db: np.ndarray      # (N, FP_BANDS) band levels minus their mean, dB: the voice's spectral shape

    def __len__(self) -> int:
        return len(self.energy_db)


class FeatureExtractor:
    """Stateful (history only) feature extractor for one stream."""

    def __init__(self, sample_rate: int, tonal_threshold: float = 0.9) -> None:
        self.sample_rate = sample_rate
        self.n = frame_samples(sample_rate)
        self.tonal_threshold = tonal_threshold
        self.nfft = 256 * sample_rate // 8000
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / sample_rate)
        self.band = np.flatnonzero((freqs >= BAND_LO_HZ) & (freqs <= BAND_HI_HZ))
        self.bin_hz = sample_rate / self.nfft
        self.window = np.hanning(self.n).astype(np.float32)
        self.fine_nfft = int(2 ** np.round(np.log2(sample_rate / FINE_BIN_HZ)))
        self.fine_hz = sample_rate / self.fine_nfft
        fine_freqs = np.fft.rfftfreq(self.fine_nfft, 1.0 / sample_rate)
        self.fine_band = np.flatnonzero((fine_freqs >= BAND_LO_HZ) & (fine_freqs <= BAND_HI_HZ))
        self._prev_spec: np.ndarray | None = None
        self.bands = _band_matrix(freqs[self.band], FP_BANDS)
        self.band_bins = np.maximum(self.bands.sum(axis=0), 1.0)
        self._cols = np.arange(len(self.band))
        # the bands are adjacent runs of bins: summed per row with reduceat (no BLAS product)
        used = np.flatnonzero(self.bands.any(axis=1))
        self._band_lo, self._band_hi = int(used[0]), int(used[-1]) + 1
        starts = [int(np.flatnonzero(self.bands[:, b])[0]) for b in range(FP_BANDS)]
        span = self._band_hi - self._band_lo
        if starts[0] != self._band_lo or np.any(np.diff(starts) <= 0) or self.bands.sum() != span:
            raise ValueError("fingerprint bands must be adjacent runs of bins")
        self._band_starts = np.asarray(starts) - self._band_lo
        self._fp_hist: np.ndarray | None = None

    # -- public -------------------------------------------------------------------
    def compute(self, frames: np.ndarray) -> Features:
        """frames: (N, samples_per_frame) float32 in [-1, 1]."""
        if frames.ndim != 2 or frames.shape[1] != self.n:
            raise ValueError(f"expected frames of {self.n} samples, got shape {frames.shape}")
        return compute_stacked([self], frames[None])


def compute_stacked(extractors: Sequence[FeatureExtractor], frames: np.ndarray) -> Features:
    """Features of K streams at once: frames (K, n, samples) float32, stream k continuing the history
    of extractors[k] (all of one sample rate).  Returns arrays of K * n frames, stream by stream.

    Every number of a frame is the same whichever other streams share the call: the numpy work runs
    row by row (no BLAS product, whose rounding depends on the number of rows)."""
    ex = extractors[0]
    k_streams, n, samples = frames.shape
    if samples != ex.n or len(extractors) != k_streams:
        raise ValueError(f"expected ({len(extractors)}, n, {ex.n}) frames, got shape {frames.shape}")
    count = k_streams * n
    flat = frames.reshape(count, samples)
    sq = flat * flat
    quarters = sq.reshape(count, 4, -1).mean(axis=2)
    power = quarters.mean(axis=1)
    energy_db = 10.0 * np.log10(power + 1e-10)
    coverage = np.mean(quarters > 0.3 * quarters.max(axis=1, keepdims=True), axis=1)

    spec = np.fft.rfft(flat * ex.window, n=ex.nfft, axis=1)[:, ex.band[0]:ex.band[-1] + 1]
    band = spec.real * spec.real + spec.imag * spec.imag + 1e-12
    total = band.sum(axis=1)
    rows = np.arange(count)
    k1 = np.argmax(band, axis=1)
    k2 = np.where(np.abs(ex._cols[None, :] - k1[:, None]) > 4, band, 0.0).argmax(axis=1)
    padded = np.zeros((count, band.shape[1] + 5), dtype=band.dtype)
    padded[:, 3:-2] = band
    csum = np.cumsum(padded, axis=1)
    peak1 = csum[rows, k1 + 5] - csum[rows, k1]       # five bins around each peak
    peak2 = csum[rows, k2 + 5] - csum[rows, k2]
    tonality = np.minimum(1.0, (peak1 + peak2) / total)
    purity = np.minimum(1.0, peak1 / total)

    # flux: 1 - cosine similarity of consecutive (square-root) spectra
    mag = np.sqrt(band)
    mag /= np.sqrt(total)[:, None]
    mag3 = mag.reshape(k_streams, n, -1)
    prev = np.empty_like(mag3)
    prev[:, 1:] = mag3[:, :-1]
    prev[:, 0] = [mag3[k, 0] if e._prev_spec is None else e._prev_spec for k, e in enumerate(extractors)]
    flux = 1.0 - np.sum(mag * prev.reshape(count, -1), axis=1)
    last = mag3[:, -1].copy()

    bands = np.add.reduceat(band[:, ex._band_lo:ex._band_hi], ex._band_starts, axis=1)
    per_bin = bands / ex.band_bins
    flatness = np.exp(np.log(per_bin).mean(axis=1)) / per_bin.mean(axis=1)

    # peak frequencies, for frames that may be tones only
    f1 = np.zeros(count)
    f2 = np.zeros(count)
    lvl2 = np.full(count, -100.0)
    cand = np.flatnonzero((tonality >= DTMF_MIN_TONALITY) & (energy_db > -60.0))
    if len(cand):
        sub, c1, c2 = band[cand], k1[cand], k2[cand]
        base = ex.band[0]
        f1[cand] = (base + c1 + _parabolic(sub, c1)) * ex.bin_hz
        f2[cand] = (base + c2 + _parabolic(sub, c2)) * ex.bin_hz
        r = np.arange(len(cand))
        lvl2[cand] = 10.0 * np.log10(sub[r, c2] / sub[r, c1])
        # exact frequencies where they matter (DTMF tolerances): fine spectrum, few frames
        lo, hi = np.minimum(f1, f2), np.maximum(f1, f2)
        fine = np.flatnonzero((lo > DTMF_LOW_BAND[0]) & (lo < DTMF_LOW_BAND[1])
                              & (hi > DTMF_HIGH_BAND[0]) & (hi < DTMF_HIGH_BAND[1]))
        if len(fine):
            f1[fine], f2[fine], lvl2[fine] = fine_peaks(
                flat[fine], ex.window, ex.fine_nfft, ex.fine_band, ex.fine_hz)

    # fingerprint words: sign of the band-energy difference across frequency, changed over time
    be = np.log(bands + 1e-9)
    # words from band energies summed over FP_SPAN frames (hop one frame): a recording heard
    # again at another sub-frame alignment gives nearly the same words
    keep = FP_SPAN + FP_LAG - 1
    bands3 = bands.reshape(k_streams, n, -1)
    ext = np.empty((k_streams, keep + n, bands.shape[1]), dtype=bands.dtype)
    ext[:, keep:] = bands3
    hists = [e._fp_hist for e in extractors]
    if all(h is not None for h in hists):      # (every stream past its first block)
        ext[:, :keep] = np.array(hists)
    else:
        for k, h in enumerate(hists):
            ext[k, :keep] = bands3[k, :1] if h is None else h
    rows_out = keep + n - FP_SPAN + 1
    summed = ext[:, 0:rows_out].copy()       # row k: ext[k:k + FP_SPAN], summed the same way in any
    for d in range(1, FP_SPAN):              # split of the stream (no running sums)
        summed += ext[:, d:d + rows_out]
    smooth = np.log(summed + 1e-9)
    tail = ext[:, -keep:].copy()
    for e, spec_k, hist_k in zip(extractors, last, tail, strict=True):   # scatter the histories back
        e._prev_spec = spec_k
        e._fp_hist = hist_k
    dfreq_all = smooth[:, :, 1:] - smooth[:, :, :-1]
    dfreq = dfreq_all[:, FP_LAG:FP_LAG + n]      # windows ending at each frame of the block
    prevd = dfreq_all[:, :n]                     # ... and FP_LAG frames earlier
    bitsm = (dfreq - prevd) > 0
    bits = (bitsm.astype(np.uint16) << np.arange(bitsm.shape[2], dtype=np.uint16)).sum(axis=2)
    shape = be * (10.0 / np.log(10.0))
    shape -= shape.mean(axis=1, keepdims=True)
    return Features(energy_db, tonality, purity, flux, flatness, f1, f2, lvl2,
                    bits.reshape(count).astype(np.uint16), coverage, shape.astype(np.float32))


def fine_peaks(
    frames: np.ndarray, window: np.ndarray, nfft: int, band_idx: np.ndarray, bin_hz: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = np.fft.rfft(frames * window, n=nfft, axis=1)[:, band_idx[0]:band_idx[-1] + 1]
    band = spec.real * spec.real + spec.imag * spec.imag + 1e-12
    rows = np.arange(band.shape[0])
    k1 = np.argmax(band, axis=1)
    # mask the main lobe of the first peak: Hann main lobe is 2 * nfft / len bins wide each side
    lobe = int(np.ceil(2.0 * nfft / frames.shape[1])) + 1
    cols = np.arange(band.shape[1])
    k2 = np.where(np.abs(cols[None, :] - k1[:, None]) > lobe, band, 0.0).argmax(axis=1)
    base = band_idx[0]
    f1 = (base + k1 + _parabolic(band, k1)) * bin_hz
    f2 = (base + k2 + _parabolic(band, k2)) * bin_hz
    lvl2 = 10.0 * np.log10(band[rows, k2] / band[rows, k1])
    return f1, f2, lvl2


def _band_matrix(freqs: np.ndarray, count: int) -> np.ndarray:
    """(bins, count) 0/1 matrix: log-spaced bands over the given bin frequencies."""
    edges = np.geomspace(300.0, 3400.0, count + 1)
    m = np.zeros((len(freqs), count), dtype=np.float32)
    for b in range(count):
        m[(freqs >= edges[b]) & (freqs < edges[b + 1]), b] = 1.0
    return m


def _parabolic(band: np.ndarray, k: np.ndarray) -> np.ndarray:
    rows = np.arange(band.shape[0])
    km = np.clip(k - 1, 0, band.shape[1] - 1)
    kp = np.clip(k + 1, 0, band.shape[1] - 1)
    a, b, c = np.log(band[rows, km]), np.log(band[rows, k]), np.log(band[rows, kp])
    den = a - 2 * b + c
    curved = den < 0
    off = np.where(curved, 0.5 * (a - c) / np.where(curved, den, -1.0), 0.0)
    return np.minimum(np.maximum(off, -0.5), 0.5)


def pcm_to_frames(pcm: bytes, samples_per_frame: int) -> np.ndarray:
    """Whole L16 LE frames as (N, samples) float32 in [-1, 1]."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
    return x.reshape(-1, samples_per_frame)
