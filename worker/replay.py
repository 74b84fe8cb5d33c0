"""Replay recordings of the far end through the live detector.

    python -m worker.replay FILE.wav [FILE.wav ...]

One JSON line per file (design.md, "Replay"):
{"file", "human_at", "outcome", "timeline", "audio_seconds", "cpu_seconds", "likely_human_at"}
`human_at` is the media second at which the worker would have transferred.
The WAV must be 16-bit mono at 8000 or 16000 Hz (nothing is resampled).
Exit status 2 when a file cannot be used (its line then has an "error").
"""

from __future__ import annotations

import os

# one stream per core: numpy's BLAS must not spin extra threads (they would only burn CPU here)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from worker.audio.detector import HoldDetector  # noqa: E402

CHUNK_FRAMES = 3000          # frames fed per call (60 s): same answers as frame by frame, faster


class ReplayError(ValueError):
    """A file the detector cannot take as it is."""


def read_wav(path: str) -> tuple[int, bytes]:
    try:
        with wave.open(path, "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ReplayError(f"{path}: need 16-bit mono, got {w.getnchannels()} channel(s) "
                                  f"of {8 * w.getsampwidth()} bits (convert with sox)")
            rate = w.getframerate()
            if rate not in (8000, 16000):
                raise ReplayError(f"{path}: sample rate {rate} Hz; the detector takes 8000 or 16000 Hz "
                                  "(resample with: sox IN -r 8000 OUT)")
            return rate, w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ReplayError(f"{path}: not a PCM WAV file ({exc})") from exc
    except FileNotFoundError as exc:
        raise ReplayError(f"{path}: no such file") from exc


def replay_file(path: str) -> dict:
    t0 = time.process_time()
    rate, pcm = read_wav(path)
    det = HoldDetector(sample_rate=rate)
    timeline: list[list] = []
    chunk = CHUNK_FRAMES * det.frame_bytes
    batches = (det.feed(pcm[off:off + chunk]) for off in range(0, len(pcm), chunk))
    for events in [*batches, det.flush()]:
        for ev in events:
            if ev.kind == "state":
                timeline.append([ev.t, ev.state])
            elif ev.kind in ("likely_human", "human", "voicemail", "sit", "busy"):
                timeline.append([ev.t, ev.kind])
    outcome = det.finish()
    cpu = time.process_time() - t0
    return {"file": path, "human_at": det.human_at, "outcome": outcome, "timeline": timeline,
            "audio_seconds": round(len(pcm) / 2 / rate, 3), "cpu_seconds": round(cpu, 4),
            "likely_human_at": det.likely_human_at}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m worker.replay", description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", metavar="FILE.wav")
    a = ap.parse_args(argv)
    status = 0
    for path in a.files:
        try:
            rec = replay_file(path)
        except ReplayError as exc:
            print(json.dumps({"file": path, "error": str(exc)}), flush=True)
            print(f"replay: {exc}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(rec, separators=(",", ":")), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
