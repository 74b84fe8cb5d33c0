"""Audio fingerprints of speech segments, to recognise a recording heard before.

Pure.  A fingerprint is the sequence of 16-bit words the feature extractor
computes per 20 ms frame (signs of band-energy differences across frequency
and time, Haitsma-Kalker style): robust to level, noise, mu-law and packet
loss, but different for two readings of the same words.  A new segment
matches a stored one when some alignment has a low bit error rate.

Export / import: `Fingerprint.to_dict()` gives a small JSON-able dict (words as
base64) that the job stores per company (`db.Fingerprint`), and
`Fingerprint.from_dict()` reads it back for `HoldDetector(known=[...])`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VERSION = 1
MAX_WORDS = 750           # longest stored segment, frames (15 s)
MATCH_BER = 0.32          # bit error rate at or under which two segments are the same recording
                          # (same recording at any sub-frame alignment <= 0.26, other prompts >= 0.40)
MAX_HEARD = 40            # recordings remembered per call (the most recent)
QUERY_WORDS = 40          # frames of a new segment compared (0.8 s)


class FingerprintError(ValueError):
    """A stored fingerprint that cannot be read."""


@dataclass
class Fingerprint:
    words: np.ndarray               # uint16, one per 20 ms frame
    kind: str = "announcement"
    sample_rate: int = 8000

    def to_dict(self) -> dict:
        return {"v": VERSION, "kind": self.kind, "rate": self.sample_rate,
                "words": base64.b64encode(self.words.astype("<u2").tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict) -> Fingerprint:
        if not isinstance(d, dict):
            raise FingerprintError(f"a fingerprint is a dict, got {type(d).__name__}")
        try:
            if d.get("v") != VERSION:
                raise FingerprintError(f"unknown fingerprint version {d.get('v')!r}")
            words = np.frombuffer(base64.b64decode(d["words"], validate=True), dtype="<u2").copy()
            return cls(words, str(d.get("kind", "announcement")), int(d.get("rate", 8000)))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, FingerprintError):
                raise
            raise FingerprintError(f"bad fingerprint: {exc}") from exc


def bit_error_rate(query: np.ndarray, stored: np.ndarray) -> float:
    """Lowest bit error rate of `query` over all alignments inside `stored` (1.0 if it does not fit)."""
    q = len(query)
    if q == 0 or len(stored) < q:
        return 1.0
    windows = sliding_window_view(stored, q)
    errors = np.bitwise_count(np.bitwise_xor(windows, query[None, :])).sum(axis=1)
    return float(errors.min()) / (16.0 * q)


class FingerprintStore:
    """Recordings heard in this call, plus those known for the company."""

    def __init__(self, known: Iterable[Fingerprint] = ()) -> None:
        self.known = list(known)
        self.heard: list[Fingerprint] = []

    def add(self, words: np.ndarray, kind: str = "announcement", sample_rate: int = 8000) -> None:
        """Remember a recording heard in this call (once: a repeat of a stored one is not added)."""
        words = np.asarray(words[:MAX_WORDS], dtype=np.uint16)
        if len(words) < QUERY_WORDS or self.is_repeat(words):
            return
        self.heard.append(Fingerprint(words, kind, sample_rate))
        del self.heard[:-MAX_HEARD]

    def match(self, query: np.ndarray) -> float:
        """Best similarity (1 - bit error rate) of the query against everything stored; 0 when nothing."""
        best = 1.0
        for fp in self.known + self.heard:
            best = min(best, bit_error_rate(query, fp.words))
        return 1.0 - best

    def is_repeat(self, query: np.ndarray) -> bool:
        return len(query) >= QUERY_WORDS and self.match(query[:QUERY_WORDS]) >= 1.0 - MATCH_BER

    def export(self) -> list[dict]:
        return [fp.to_dict() for fp in self.heard]
