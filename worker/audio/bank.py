"""Many calls' detectors analysed together: one set of numpy calls per round, not one per call.

    events = feed_many([(det_a, pcm_a), (det_b, pcm_b), ...])   # events[i] belongs to item i

Each detector gets its bytes appended (a partial frame waits, as with `HoldDetector.feed`) and
every whole frame it holds is analysed now, whatever `DetectorParams.batch_frames` says: batching
is what the bank itself does, across streams.  Streams are grouped by sample rate and params
(`HoldDetector.group_key`) and by frame count (at real time a 100 ms round brings 4 to 6 frames per
stream), and each group goes through `detector.analyse_stacked`, the path a lone detector runs
too.  A stream's events and per-frame states are exactly those of the same audio fed to its
detector alone (tests/audio/test_bank.py); the per-frame part (tones, hysteresis, the human
decision) still runs per stream.

Pure: no clocks, sockets or logging.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detector import SUB_BLOCK, DetectorEvent, HoldDetector, analyse_stacked


def feed_many(items: Sequence[tuple[HoldDetector, bytes]],
              max_frames: int = SUB_BLOCK) -> list[list[DetectorEvent]]:
    """Feed each detector its audio and analyse all whole frames of all of them; events per item.

    A stream with more than `max_frames` frames (a backlog) is analysed in pieces of at most that
    many, in order, each piece grouped with the other streams' pieces of the same pass."""
    if max_frames < 1 or max_frames > SUB_BLOCK:
        raise ValueError(f"max_frames must be 1..{SUB_BLOCK}, got {max_frames}")
    out: list[list[DetectorEvent]] = [[] for _ in items]
    passes: list[list[tuple[int, bytes]]] = []
    for i, (det, pcm) in enumerate(items):
        data = _take_whole(det, pcm)
        if not data:
            continue
        step = max_frames * det.frame_bytes
        for p, off in enumerate(range(0, len(data), step)):
            if p == len(passes):
                passes.append([])
            passes[p].append((i, data[off:off + step]))
    for pieces in passes:
        groups: dict[tuple, list[tuple[int, bytes]]] = {}
        for i, piece in pieces:
            det = items[i][0]
            groups.setdefault((det.group_key, len(piece)), []).append((i, piece))
        for (_, size), members in groups.items():
            dets = [items[i][0] for i, _ in members]
            samples = dets[0].frame_bytes // 2
            raw = members[0][1] if len(members) == 1 else b"".join(piece for _, piece in members)
            frames = np.frombuffer(raw, dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
            results = analyse_stacked(dets, frames.reshape(len(members), size // (2 * samples), samples))
            for (i, _), events in zip(members, results, strict=True):
                out[i] += events
    return out


def _take_whole(det: HoldDetector, pcm: bytes) -> bytes:
    """The detector's waiting bytes plus `pcm`, whole frames only; the rest stays waiting."""
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise TypeError(f"feed_many() takes bytes of L16 audio, got {type(pcm).__name__}")
    data = bytes(det._pending) + bytes(pcm) if det._pending else bytes(pcm)
    whole = len(data) - len(data) % det.frame_bytes
    if whole != len(data) or det._pending:
        det._pending = bytearray(data[whole:])
    return data[:whole]
