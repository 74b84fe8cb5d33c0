"""HoldDetector: the facade the worker job and `python -m worker.replay` both run.

    det = HoldDetector(sample_rate=8000, params=DetectorParams(), known=[Fingerprint, ...])
    for ev in det.feed(pcm_bytes):      # any number of bytes; whole 20 ms frames are used,
        ...                             # a partial frame waits for the next call
    det.outcome                         # None | human | voicemail | sit | busy
    det.finish()                        # the outcome at the end of the audio (no_human if none)

Media time is the number of samples fed: no clocks, sockets or logging here.
Feeding a recording in one call or frame by frame gives the same events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .classifier import ClassifierParams, FrameBlock, FrameClassifier, Hysteresis, process_stacked
from .features import FRAME_MS, frame_samples
from .fingerprint import Fingerprint, FingerprintError, FingerprintStore
from .human import HumanDecider, HumanParams

SUB_BLOCK = 500      # frames analysed at once (bounds memory; results do not depend on it;
                     # must stay <= human.RING - human.PROFILE_FRAMES)
OUTCOMES = ("human", "voicemail", "sit", "busy", "no_human")
EVENT_KINDS = ("state", "likely_human", "human", "voicemail", "sit", "busy", "beep", "dtmf")


@dataclass(frozen=True)
class DetectorParams:
    classifier: ClassifierParams = field(default_factory=ClassifierParams)
    human: HumanParams = field(default_factory=HumanParams)
    batch_frames: int = 10   # frames gathered before analysis: events come at most 200 ms late, the
                             # per-call numpy overhead is paid once per batch (1 = every frame)


@dataclass
class DetectorEvent:
    t: float                 # media seconds (end of the frame that decided it)
    kind: str                # one of EVENT_KINDS
    state: str               # the classifier state at that moment
    confidence: float = 1.0
    detail: str = ""         # DTMF key, beep frequency, busy/reorder

    def to_dict(self) -> dict:
        return {"t": self.t, "kind": self.kind, "state": self.state,
                "confidence": round(self.confidence, 3), "detail": self.detail}


class HoldDetector:
    def __init__(self, sample_rate: int = 8000, params: DetectorParams | None = None,
                 known: Iterable[Fingerprint | dict] = ()) -> None:
        self.sample_rate = sample_rate
        self.frame_bytes = frame_samples(sample_rate) * 2      # raises on an unsupported rate
        self.params = params or DetectorParams()
        fps: list[Fingerprint] = []
        self.bad_known = 0       # stored fingerprints that could not be read (skipped; the job may log it)
        for k in known:
            try:
                fps.append(k if isinstance(k, Fingerprint) else Fingerprint.from_dict(k))
            except FingerprintError:
                self.bad_known += 1
        self.store = FingerprintStore(fps)
        self.classifier = FrameClassifier(sample_rate, self.params.classifier)
        self.decider = HumanDecider(self.params.human, self.store, sample_rate)
        self.hysteresis = Hysteresis(self.params.classifier.hold_frames)
        self._pending = bytearray()
        self.frames = 0
        self.likely_human_at: float | None = None
        self.human_at: float | None = None
        self.confidence = 0.0
        self.frame_states: list[str] | None = None   # set to [] to record the state of every frame
        self._group_key: tuple[int, str] | None = None

    @property
    def state(self) -> str:
        return self.hysteresis.state

    @property
    def outcome(self) -> str | None:
        return self.decider.outcome

    @property
    def media_seconds(self) -> float:
        return self.frames * FRAME_MS / 1000.0

    def feed(self, pcm: bytes) -> list[DetectorEvent]:
        """Analyse whole L16 LE frames once `params.batch_frames` of them are waiting (events carry
        their exact media time; batching only saves per-call overhead).  A partial frame waits."""
        if not isinstance(pcm, bytes | bytearray | memoryview):
            raise TypeError(f"feed() takes bytes of L16 audio, got {type(pcm).__name__}")
        self._pending += bytes(pcm)
        if len(self._pending) < self.params.batch_frames * self.frame_bytes:
            return []
        return self.flush()

    def flush(self) -> list[DetectorEvent]:
        """Analyse every whole frame received so far, however few."""
        data = bytes(self._pending)
        whole = len(data) - len(data) % self.frame_bytes
        self._pending = bytearray(data[whole:])
        if not whole:
            return []
        frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
        return self._run(frames.reshape(-1, self.frame_bytes // 2))

    def transcript_hint(self, text: str, t: float | None = None) -> int:
        """Speech-to-text of what the far end just said: +1 sounds live, -1 sounds recorded, 0 neither."""
        if not isinstance(text, str):
            raise TypeError("transcript_hint() takes text")
        return self.decider.hint(text, self.media_seconds if t is None else t)

    def prompt_ended(self, min_silence_ms: int = 700) -> bool:
        """Navigator helper (LISTEN steps): speech was heard, then at least min_silence_ms of silence."""
        return self.decider.prompt_ended(min_silence_ms / 1000.0)

    def fingerprints(self) -> list[dict]:
        """Recordings heard in this call, for storing per company (import with known=...)."""
        return self.store.export()

    def inherit(self, other: HoldDetector) -> None:
        """Start from what `other`, this call's previous detector, learned about the call (the
        recorded voices heard, music); its decisions are not carried over.  With `known=
        other.fingerprints()` this is how the worker renews its detector for the hold."""
        self.decider.inherit(other.decider)

    def finish(self) -> str:
        """The outcome at the end of the audio (analyses what is still waiting first)."""
        self.flush()
        return self.decider.outcome or "no_human"

    # -- internals --------------------------------------------------------------------
    def _run(self, frames: np.ndarray) -> list[DetectorEvent]:
        events: list[DetectorEvent] = []
        for off in range(0, len(frames), SUB_BLOCK):
            events += self._run_block(frames[off:off + SUB_BLOCK])
        return events

    def _run_block(self, frames: np.ndarray) -> list[DetectorEvent]:
        return analyse_stacked([self], frames[None])[0]

    @property
    def group_key(self) -> tuple[int, str]:
        """Detectors with equal keys can be analysed together (analyse_stacked)."""
        key = self._group_key
        if key is None:
            key = self._group_key = (self.sample_rate, repr(self.params.classifier))
        return key

    def _step_block(self, block: FrameBlock) -> list[DetectorEvent]:
        """The per-frame part: hysteresis, tone events and the human decision, frame by frame."""
        mask = block.active_mask if block.active_mask is not None else np.asarray(block.active)
        self.decider.load(block.start, block.shape_db, mask)
        decider, hyst = self.decider, self.hysteresis
        events: list[DetectorEvent] = []
        tone_at: dict[int, list] = {}
        for j, tev in block.tone_events:     # (usually none)
            tone_at.setdefault(j, []).append(tev)
        labels, active, tone = block.labels, block.active, block.tone
        words, energy, flux = block.words, block.energy_db, block.flux
        record = self.frame_states
        base = block.start
        for j in range(len(labels)):
            i = base + j
            label = labels[j]
            if hyst.step(label):
                events.append(DetectorEvent(round((i + 1) * 0.02, 3), "state", hyst.state))
            if record is not None:
                record.append(hyst.state)
            if j in tone_at:
                for tev in tone_at[j]:
                    if tev.kind in ("dtmf", "beep"):
                        events.append(DetectorEvent(tev.t, tev.kind, hyst.state, 1.0, tev.detail))
                    d = decider.tone_event(i, tev.kind)
                    if d is not None:
                        events.append(self._decided(d))
            if decider.outcome is None:
                d = decider.step(i, active[j], energy[j], flux[j], tone[j], words[j],
                                 label == "music", label != "")
                if d is not None:
                    events.append(self._decided(d))
        self.frames += len(labels)
        return events

    def _decided(self, d) -> DetectorEvent:
        self.confidence = d.confidence
        if d.kind == "likely_human" and self.likely_human_at is None:
            self.likely_human_at = d.t
        if d.kind == "human":
            self.human_at = d.t
        return DetectorEvent(d.t, d.kind, self.hysteresis.state, d.confidence, d.detail)


def analyse_stacked(detectors: Sequence[HoldDetector], frames: np.ndarray) -> list[list[DetectorEvent]]:
    """Analyse n frames of each of K streams: frames (K, n, samples) float32, row k the next audio of
    detectors[k] (equal `group_key`s, n <= SUB_BLOCK).  The numpy part runs once for all K streams
    (classifier.process_stacked), the per-frame part per stream.  A lone detector is K = 1: replay,
    tests and the worker's bank all run this one path."""
    blocks = process_stacked([d.classifier for d in detectors], frames)
    return [d._step_block(b) for d, b in zip(detectors, blocks, strict=True)]
