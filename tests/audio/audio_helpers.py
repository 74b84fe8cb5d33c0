"""Audio for the detector tests: generated tones, and real recordings converted with sox.

Real sounds come from Debian packages (asterisk prompts and hold music) and
espeak-ng; sox converts them to 16-bit mono L16 at the rate a test asks for.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import wave

import numpy as np
import pytest

from worker.audio.detector import DetectorEvent, HoldDetector

PROMPTS = "/usr/share/asterisk/sounds/en"
MOH = "/usr/share/asterisk/moh"


def need(path_or_tool: str) -> None:
    if os.sep in path_or_tool:
        if not os.path.exists(path_or_tool):
            pytest.skip(f"{path_or_tool} not installed")
    elif shutil.which(path_or_tool) is None:
        pytest.skip(f"{path_or_tool} not installed")


@functools.lru_cache(maxsize=64)
def _sox_cached(path: str, rate: int, trim: tuple[float, float] | None) -> bytes:
    args = ["sox", path, "-t", "raw", "-r", str(rate), "-c", "1", "-e", "signed", "-b", "16", "-"]
    if trim:
        args += ["trim", str(trim[0]), str(trim[1])]
    return subprocess.run(args, check=True, capture_output=True).stdout


def sound(path: str, rate: int = 8000, start: float | None = None,
          seconds: float | None = None) -> np.ndarray:
    """A real recording as float32 at `rate`, optionally a slice of it."""
    need("sox")
    need(path)
    raw = _sox_cached(path, rate, (start or 0.0, seconds) if seconds else None)
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


@functools.lru_cache(maxsize=32)
def _espeak(text: str, rate: int, voice: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "s.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", out, text], check=True, capture_output=True)
        return _sox_cached(out, rate, None)


def speech(text: str, rate: int = 8000, voice: str = "en-us") -> np.ndarray:
    need("espeak-ng")
    need("sox")
    return np.frombuffer(_espeak(text, rate, voice), dtype="<i2").astype(np.float32) / 32768.0


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-12
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def silence(seconds: float, rate: int = 8000, noise_dbfs: float = -60.0, seed: int = 1) -> np.ndarray:
    """Line noise, not digital zero (a real line is never perfectly silent)."""
    n = int(round(seconds * rate))
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 1.0, n) * 10 ** (noise_dbfs / 20)).astype(np.float32)


def tone(freqs: list[float], seconds: float, rate: int = 8000, dbfs: float = -16.0,
         levels_db: list[float] | None = None) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    gains = [10 ** (g / 20) for g in (levels_db or [0.0] * len(freqs))]
    x = sum(g * np.sin(2 * np.pi * f * t) for f, g in zip(freqs, gains, strict=True))
    return level(np.asarray(x, dtype=np.float32), dbfs)


def cadence(freqs: list[float], pattern: list[float], total: float, rate: int = 8000) -> np.ndarray:
    """Alternating on/off durations (seconds) repeated for `total` seconds."""
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < total * rate:
        for k, d in enumerate(pattern):
            parts.append(tone(freqs, d, rate) if k % 2 == 0 else silence(d, rate))
    return np.concatenate(parts)[: int(total * rate)]


def pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def add_noise(x: np.ndarray, noise_dbfs: float = -60.0, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (x + rng.normal(0.0, 10 ** (noise_dbfs / 20), len(x))).astype(np.float32)


def run(x: np.ndarray, rate: int = 8000, chunk: int | None = None,
        **kwargs) -> tuple[HoldDetector, list[DetectorEvent]]:
    """Feed audio to a fresh detector (whole, or in chunks of `chunk` bytes); record per-frame states."""
    det = HoldDetector(sample_rate=rate, **kwargs)
    det.frame_states = []
    data = pcm(x)
    events: list[DetectorEvent] = []
    if chunk is None:
        events = det.feed(data)
    else:
        for off in range(0, len(data), chunk):
            events += det.feed(data[off:off + chunk])
    events += det.flush()
    return det, events


def rle(states: list[str]) -> str:
    """Run-length string of per-frame states: 'music*150 speech*40'."""
    out: list[str] = []
    prev, count = None, 0
    for s in states:
        if s == prev:
            count += 1
            continue
        if prev is not None:
            out.append(f"{prev}*{count}")
        prev, count = s, 1
    if prev is not None:
        out.append(f"{prev}*{count}")
    return " ".join(out)


def write_wav(path: str, x: np.ndarray, rate: int = 8000, channels: int = 1) -> None:
    data = pcm(x)
    if channels == 2:
        mono = np.frombuffer(data, dtype="<i2")
        data = np.repeat(mono, 2).astype("<i2").tobytes()
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


def kinds(events: list[DetectorEvent], kind: str) -> list[DetectorEvent]:
    return [e for e in events if e.kind == kind]


def agent_after_hold(rate: int = 8000) -> np.ndarray:
    """Opsound hold music, then a live agent: a greeting, a 2 s wait for a reply, a second try."""
    hold = level(sound(f"{MOH}/macroform-the_simplicity.wav", rate, 30.0, 25.0), -20)
    first = level(speech("Hello, this is Anna speaking.", rate), -20)
    second = level(speech("Hello? Are you there?", rate), -20)
    return add_noise(np.concatenate([hold, silence(0.6, rate), first, silence(2.0, rate), second,
                                     silence(3.0, rate)]))
