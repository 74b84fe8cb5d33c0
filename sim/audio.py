"""PCM helpers: 8 kHz signed 16-bit mono numpy arrays, the SIP leg's native format.

Real recordings come from WAV files (resampled with sox when not 8 kHz mono),
speech from espeak-ng (rendered once per text+voice, cached on disk), tones are
generated.  The company side of a call is 8 kHz like a PCMU trunk; 16 kHz forks
are upsampled from it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import uuid
import wave
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_MS = 20
SIT_TONES = ((913.8, 274), (1370.6, 274), (1776.7, 380))  # Hz, ms (vars.xml `sit`)
TONE_LEVEL = 0.25  # fraction of full scale for generated tones


class AudioError(Exception):
    """An audio source cannot be read or rendered."""


def cache_dir() -> Path:
    path = Path(os.environ.get("SIM_AUDIO_CACHE", Path(tempfile.gettempdir()) / "hold-slayer-sim-audio"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), dtype=np.int16)


def tone(freqs: list[float] | tuple[float, ...], ms: float, level: float = TONE_LEVEL) -> np.ndarray:
    n = int(round(ms * RATE / 1000))
    t = np.arange(n) / RATE
    sig = sum(np.sin(2 * np.pi * f * t) for f in freqs) / max(1, len(freqs))
    return (np.asarray(sig) * level * 32767).astype(np.int16)


def sit_tone() -> np.ndarray:
    return np.concatenate([tone([f], ms) for f, ms in SIT_TONES])


def read_wav(path: str | Path) -> np.ndarray:
    """Any WAV file as 8 kHz mono int16 (sox converts what is not already that)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as w:
            if w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2:
                return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    except (wave.Error, EOFError):
        pass
    digest = hashlib.sha1(
        f"{path.resolve()}:{path.stat().st_mtime}".encode(), usedforsecurity=False
    ).hexdigest()
    out = cache_dir() / f"conv-{digest}.wav"
    if not out.exists():
        _sox(str(path), out)
    return read_wav(out)


def _unique(path: Path, tag: str) -> Path:
    """A private scratch name next to `path` (several processes may render the same audio at once)."""
    return path.with_name(f"{path.stem}.{tag}.{os.getpid()}.{uuid.uuid4().hex[:8]}.wav")


def _sox(src: str, out: Path) -> None:
    tmp = _unique(out, "tmp")
    try:
        subprocess.run(
            ["sox", src, "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise AudioError(f"sox could not convert {src}: {exc}") from exc
    tmp.replace(out)  # atomic: readers see the whole file or none


def say(text: str, voice: str = "en-us", speed_wpm: int = 160) -> np.ndarray:
    """espeak-ng speech, rendered once per (text, voice) and cached."""
    key = hashlib.sha1(f"{voice}\0{speed_wpm}\0{text}".encode(), usedforsecurity=False).hexdigest()
    out = cache_dir() / f"say-{key}.wav"
    if not out.exists():
        raw = _unique(out, "raw")
        try:
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", str(raw), text],
                check=True,
                capture_output=True,
                timeout=60,
            )
            _sox(str(raw), out)
        except (OSError, subprocess.SubprocessError) as exc:
            raise AudioError(f"espeak-ng could not say {text!r} with voice {voice}: {exc}") from exc
        finally:
            raw.unlink(missing_ok=True)
    return read_wav(out)


def parse_tone_stream(spec: str) -> np.ndarray:
    """tone_stream://%(on,off,f1[,f2]);%(...) [;loops=N] -> one pass (loops capped at 10 passes, 30 s)."""
    body = spec.split("://", 1)[1] if "://" in spec else spec
    loops = 1
    parts = []
    for chunk in body.split(";"):
        chunk = chunk.strip()
        if chunk.startswith("loops="):
            try:
                loops = int(chunk[6:])
            except ValueError:
                loops = 1
            continue
        if chunk.startswith("%(") and chunk.endswith(")"):
            nums = [float(x) for x in chunk[2:-1].split(",") if x.strip()]
            if len(nums) >= 3:
                parts.append(tone(nums[2:], nums[0]))
                parts.append(silence(nums[1] / 1000))
    one = np.concatenate(parts) if parts else silence(0.5)
    reps = 10 if loops < 0 else max(1, min(loops, 10))
    return np.tile(one, reps)[: 30 * RATE]


def load_playable(path: str) -> np.ndarray:
    """What uuid_broadcast / playback can play: a WAV path, tone_stream://, silence_stream://ms."""
    if path.startswith("playback::"):
        path = path[len("playback::") :]
    if path.startswith("tone_stream://"):
        return parse_tone_stream(path)
    if path.startswith("silence_stream://"):
        try:
            ms = int(path[len("silence_stream://") :].split(",")[0])
        except ValueError:
            ms = 1000
        return silence((ms if ms > 0 else 1000) / 1000)
    if path.startswith("say:"):
        return say(path[4:])
    return read_wav(path)


def upsample_16k(frame: np.ndarray, last: int = 0) -> np.ndarray:
    """Linear interpolation 8k -> 16k; `last` is the previous frame's last sample (continuity)."""
    x = frame.astype(np.int32)
    prev = np.concatenate(([last], x[:-1]))
    out = np.empty(len(x) * 2, dtype=np.int32)
    out[0::2] = (prev + x) // 2
    out[1::2] = x
    return out.astype(np.int16)


def energy(frame: np.ndarray) -> float:
    if len(frame) == 0:
        return 0.0
    return float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
