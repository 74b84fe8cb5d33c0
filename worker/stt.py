"""Speech to text for IVR prompts: `Transcriber.transcribe(pcm, rate) -> [Segment]`.

- `SphinxTranscriber`: offline, embedded default (pocketsphinx and the en-us model its wheel ships).
  Telephone audio (8 kHz) is resampled to 16 kHz by linear interpolation before decoding: the
  shipped acoustic model is a 16 kHz model, and decoding 8 kHz directly (`samprate 8000, nfft 256`
  with the model's `upperf` lowered to 3500 Hz, which needs a patched feat.params) was measured
  much worse on the Asterisk prompts (word salad vs. mostly right words, see tests/nav).  A
  word-loop JSGF grammar of menu words was also tried: far slower than the n-gram search.
  pocketsphinx holds the GIL, so decoding runs in short chunks with `gevent.sleep(0)` between
  them: other calls keep flowing while one prompt is transcribed.
- `OpenAITranscriber`: any OpenAI-compatible `audio.transcriptions` endpoint (Whisper, faster-whisper
  servers, vLLM): an in-memory WAV, `verbose_json` segment timestamps when the server has them.
- `StreamingTranscriber`: the job feeds 20 ms frames; `end_utterance()` transcribes what was buffered
  and returns segments on media time (seconds since the first frame fed).
- `make_transcriber(settings)` picks one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
import numpy as np
from gevent.lock import Semaphore

from worker.errors import SpeechError

log = logging.getLogger(__name__)

SPHINX_RATE = 16000  # the shipped en-us acoustic model's rate, Hz
SPHINX_FRAME_RATE = 100  # pocketsphinx frames per second
SPHINX_CHUNK_S = 0.25  # audio decoded between two cooperative yields, seconds
SEGMENT_GAP_S = 0.35  # a pause at least this long splits two segments, seconds
STT_MODEL = "whisper-1"  # OpenAI-compatible default (Settings.stt_model, from STT_MODEL)
STT_TIMEOUT_S = 30.0
MAX_UTTERANCE_S = 60.0  # StreamingTranscriber keeps at most this much audio, seconds
SPHINX_MODELS = ("menu", "dictation")  # menu: our IVR bigram LM; dictation: the shipped en-us LM
_FILLER_WORDS = ("<s>", "</s>", "<sil>")


@dataclass(frozen=True)
class Segment:
    """A stretch of recognised speech; start/end in seconds from the start of the audio given."""

    start: float
    end: float
    text: str


class Transcriber(Protocol):
    def transcribe(self, pcm: bytes, rate: int) -> list[Segment]: ...


def _check_pcm(pcm: bytes, rate: int) -> None:
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise SpeechError(f"pcm must be bytes (L16 little-endian mono), got {type(pcm).__name__}")
    if len(pcm) % 2:
        raise SpeechError(f"pcm must hold whole 16-bit samples, got {len(pcm)} bytes")
    if not isinstance(rate, int) or not 4000 <= rate <= 48000:
        raise SpeechError(f"rate must be a sample rate in Hz (4000..48000), got {rate!r}")


def resample(pcm: bytes, rate: int, to_rate: int) -> bytes:
    """L16 mono from `rate` to `to_rate` by linear interpolation (pure; fine for 8k -> 16k)."""
    if rate == to_rate:
        return bytes(pcm)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if x.size == 0:
        return b""
    n_out = int(round(x.size * to_rate / rate))
    t = np.arange(n_out, dtype=np.float64) * (rate / to_rate)
    y = np.interp(t, np.arange(x.size), x)
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """A mono 16-bit WAV file in memory (pure)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(pcm))
    return buf.getvalue()


def group_words(words: Sequence[tuple[str, float, float]], gap_s: float = SEGMENT_GAP_S) -> list[Segment]:
    """Timed words (text, start, end) as segments split at pauses of at least gap_s (pure)."""
    out: list[Segment] = []
    cur: list[tuple[str, float, float]] = []
    for w in words:
        if cur and w[1] - cur[-1][2] >= gap_s:
            out.append(Segment(round(cur[0][1], 2), round(cur[-1][2], 2), " ".join(x[0] for x in cur)))
            cur = []
        cur.append(w)
    if cur:
        out.append(Segment(round(cur[0][1], 2), round(cur[-1][2], 2), " ".join(x[0] for x in cur)))
    return out


# --- a small language model of IVR speech ------------------------------------------------------
# The en-us dictation model knows 130k words and mishears menus as news; a bigram model of what
# phone menus say is both faster and far more accurate on prompts (measured in tests/nav).
MENU_LM_VERSION = 3  # bump when arpa_bigram changes: the cached file is keyed on it and the corpus
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "star", "pound")
_LABELS = tuple(
    " ".join(x.split())
    for x in """billing|billing and payments|payments|technical support|support|sales|new service|
    orders|order status|
    returns|returns and exchanges|a representative|an operator|an agent|customer service|account balance|
    your account|accounts|accounts and cards|cards|credit cards|debit cards|claims|a new claim|pharmacy|
    prescription refills|appointments|fraud|a lost or stolen card|disputes|a billing dispute|branch hours|
    branch locations|store hours and locations|hours and locations|our hours|the company directory|
    all other questions|other questions|everything else|english|existing customers|new customers|internet|
    phone|mobile|wireless|television|cable|outages|repairs|cancellations|upgrades|shipping|delivery|tracking|
    password reset|online banking|personal banking|business banking|loans|mortgages|insurance|benefits|
    human resources|employment|membership|reservations|general information|questions about your bill|
    questions about your order|questions about your account""".split("|")
)
_VERB_PHRASES = tuple(
    " ".join(x.split())
    for x in """speak to a representative|speak with a representative|speak to someone|talk to someone|
    talk to an agent|
    speak to an operator|speak to a customer service representative|reach customer service|pay your bill|
    make a payment|check a balance|check your balance|report an outage|report a lost or stolen card|
    cancel your service|check the status of your order|repeat this menu|hear these options again|
    return to the main menu|leave a message|request a call back|receive a call back|schedule an appointment|
    reset your password|file a claim|record your name|record your message|change your password|
    activate your card|open an account""".split("|")
)
_SENTENCES = (
    "thank you for calling",
    "welcome to customer service",
    "please listen carefully as our menu options have changed",
    "please listen closely as our options have changed",
    "please hold",
    "please continue to hold",
    "your call is important to us",
    "your call is very important to us please stay on the line",
    "all of our representatives are currently assisting other customers",
    "all of our agents are busy please hold for the next available agent",
    "your call will be answered in the order it was received",
    "please remain on the line",
    "your estimated wait time is five minutes",
    "thank you for your patience",
    "thank you for holding",
    "a representative will be with you shortly",
    "please enter your account number followed by the pound key",
    "please say or enter your account number",
    "in a few words tell me why you are calling",
    "how can i help you today",
    "i am sorry i did not understand",
    "that is not a valid option please try again",
    "please hold while we transfer your call",
    "please hold while i try that extension",
    "one moment please",
    "goodbye",
    "otherwise stay on the line",
    "if you know your party's extension you may dial it at any time",
    "this call may be recorded for quality assurance",
    "please try again later",
    "to hear these options again press star",
)


def menu_corpus() -> list[str]:
    """Sentences typical of IVR prompts (pure, deterministic): the training text of the menu LM.

    Every label and phrase is paired with every key in both orders, so no digit is favoured.
    """
    out = list(_SENTENCES)
    labels = [" ".join(x.split()) for x in _LABELS]
    phrases = [" ".join(x.split()) for x in _VERB_PHRASES]
    for d in _DIGITS:
        out += [f"for {label} press {d}" for label in labels] + [f"press {d} for {label}" for label in labels]
        out += [f"to {p} press {d}" for p in phrases] + [f"press {d} to {p}" for p in phrases]
        out += [f"press {d}", f"or press {d} now", f"please press {d}", f"dial {d}"]
    out += [f"for {label} say {label.split()[-1]}" for label in labels]
    out += [f"if you would like to {p} press one" for p in phrases]
    return out


def arpa_bigram(sentences: Sequence[str], vocabulary: set[str] | None = None, discount: float = 0.5) -> str:
    """An ARPA bigram model (absolute discounting with backoff) of the sentences (pure)."""
    from collections import Counter

    uni: Counter[str] = Counter()
    bi: Counter[tuple[str, str]] = Counter()
    for s in sentences:
        words = [w for w in s.split() if vocabulary is None or w in vocabulary]
        seq = ["<s>", *words, "</s>"]
        uni.update(seq)
        bi.update(zip(seq, seq[1:], strict=False))
    vocab = sorted(uni)
    total = sum(c for w, c in uni.items() if w != "<s>")
    p_uni = {w: (uni[w] + 1) / (total + len(vocab) - 1) for w in vocab}  # add-one over all but <s>
    p_uni["<s>"] = 0.0
    follow: dict[str, list[str]] = {}
    for v, w in bi:
        follow.setdefault(v, []).append(w)
    p_bi: dict[tuple[str, str], float] = {}
    bow: dict[str, float] = {}
    for v, ws in follow.items():
        cv = sum(bi[(v, w)] for w in ws)
        lam = discount * len(ws) / cv
        for w in ws:
            p_bi[(v, w)] = (bi[(v, w)] - discount) / cv + lam * p_uni[w]
        left = 1.0 - sum(p_bi[(v, w)] for w in ws)
        mass = 1.0 - sum(p_uni[w] for w in ws)
        bow[v] = max(left, 1e-9) / max(mass, 1e-9)
    lg = lambda x: -99.0 if x <= 0 else math.log10(x)  # noqa: E731 - a local shorthand
    lines = ["\\data\\", f"ngram 1={len(vocab)}", f"ngram 2={len(p_bi)}", "", "\\1-grams:"]
    for w in vocab:
        lines.append(
            f"{lg(p_uni[w]):.4f} {w} {lg(bow.get(w, 1.0)):.4f}" if w in bow else f"{lg(p_uni[w]):.4f} {w}"
        )
    lines += ["", "\\2-grams:"]
    lines += [f"{lg(p):.4f} {v} {w}" for (v, w), p in sorted(p_bi.items())]
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def _dictionary_words() -> set[str]:
    from pocketsphinx import get_model_path

    path = os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(path, encoding="utf-8") as f:
        return {line.split(" ", 1)[0] for line in f if line.strip() and "(" not in line.split(" ", 1)[0]}


def menu_lm_path() -> str:
    """The menu language model as an ARPA file (built once per content, cached in the temp dir)."""
    corpus = menu_corpus()
    key = hashlib.sha256("\n".join([str(MENU_LM_VERSION), *corpus]).encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"hold-slayer-menu-{key}.arpa")
    if not os.path.exists(path):
        text = arpa_bigram(corpus, _dictionary_words())
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


_DECODER_CACHE: dict[tuple[tuple[str, Any], ...], Any] = {}


class SphinxTranscriber:
    """pocketsphinx on 16 kHz audio; one decoder per configuration per process, used one call at a time."""

    def __init__(self, model: str = "menu", **config: Any) -> None:
        if model not in SPHINX_MODELS:
            raise SpeechError(f"pocketsphinx model must be one of {SPHINX_MODELS}, got {model!r}")
        self.model = model
        self.config = {"loglevel": "FATAL", **config}
        if model == "menu" and "lm" not in config:
            self.config["lm"] = menu_lm_path()

    def _decoder(self) -> Any:
        key = tuple(sorted(self.config.items()))
        dec = _DECODER_CACHE.get(key)
        if dec is None:
            try:
                from pocketsphinx import Decoder
            except ImportError as exc:  # pragma: no cover - it is in requirements.txt
                raise SpeechError("pocketsphinx is not installed") from exc
            try:
                dec = Decoder(**self.config)
            except (RuntimeError, ValueError) as exc:
                raise SpeechError(f"pocketsphinx failed to start: {exc}") from exc
            _DECODER_CACHE[key] = dec
        return dec

    def warm(self) -> None:
        """Load the model now (seconds of CPU that block the process): at worker start, not mid-call."""
        with _SHARED_LOCK:
            self._decoder()

    def transcribe(self, pcm: bytes, rate: int) -> list[Segment]:
        _check_pcm(pcm, rate)
        audio = resample(pcm, rate, SPHINX_RATE)
        if not audio:
            return []
        chunk = int(SPHINX_CHUNK_S * SPHINX_RATE) * 2
        with _SHARED_LOCK:
            dec = self._decoder()
            # Features from this utterance alone: fresh noise tracking, then a feature-only pass for a
            # batch cepstral mean, so the words never depend on what the shared decoder heard before.
            dec.reinit_feat()
            dec.start_utt()
            try:
                dec.process_raw(audio, True, True)
                cmn = dec.get_cmn(False)
            finally:
                dec.end_utt()
            dec.set_cmn(cmn)
            dec.start_utt()
            try:
                for i in range(0, len(audio), chunk):
                    dec.process_raw(audio[i : i + chunk], False, False)
                    gevent.sleep(0)  # pocketsphinx holds the GIL: let other greenlets run
            finally:
                dec.end_utt()
            words = [
                (
                    s.word.split("(")[0],
                    s.start_frame / SPHINX_FRAME_RATE,
                    (s.end_frame + 1) / SPHINX_FRAME_RATE,
                )
                for s in dec.seg()
                if s.word not in _FILLER_WORDS and not s.word.startswith("[") and not s.word.startswith("+")
            ]
        return group_words(words)


_SHARED_LOCK = Semaphore()  # decoders are shared per process (model load ~1 s, ~100 MB): one decode at a time


class OpenAITranscriber:
    """An OpenAI-compatible `audio.transcriptions` endpoint."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        model: str = STT_MODEL,
        timeout_s: float = STT_TIMEOUT_S,
        language: str = "en",
        call_id: str = "",
    ) -> None:
        import openai

        if not base_url:
            raise SpeechError("OpenAITranscriber needs a base_url (STT_BASE_URL)")
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=1
        )
        self.model = model
        self.language = language
        self.call_id = call_id
        self._verbose = True

    def transcribe(self, pcm: bytes, rate: int) -> list[Segment]:
        _check_pcm(pcm, rate)
        if not pcm:
            return []
        duration = len(pcm) / 2 / rate
        audio = ("prompt.wav", wav_bytes(pcm, rate), "audio/wav")
        oa = self._openai
        try:
            if self._verbose:
                try:
                    resp = self._client.audio.transcriptions.create(
                        model=self.model,
                        file=audio,
                        response_format="verbose_json",
                        timestamp_granularities=["segment"],
                        language=self.language,
                    )
                    return self._segments(resp, duration)
                except oa.BadRequestError:
                    log.info("call %s: transcription server refuses verbose_json; using json", self.call_id)
                    self._verbose = False
            plain = self._client.audio.transcriptions.create(
                model=self.model, file=audio, language=self.language
            )
            return self._segments(plain, duration)
        except oa.OpenAIError as exc:
            raise SpeechError(f"transcription API failed: {type(exc).__name__}") from exc

    @staticmethod
    def _segments(resp: Any, duration: float) -> list[Segment]:
        segs = getattr(resp, "segments", None) or []
        out = []
        for s in segs:
            get = s.get if isinstance(s, dict) else (lambda k, s=s: getattr(s, k, None))
            text = str(get("text") or "").strip()
            if text:
                out.append(Segment(float(get("start") or 0.0), float(get("end") or duration), text))
        if out:
            return out
        text = str(getattr(resp, "text", "") or "").strip()
        return [Segment(0.0, round(duration, 2), text)] if text else []


class StreamingTranscriber:
    """Buffers the frames of one utterance; `end_utterance()` transcribes them on media time."""

    def __init__(self, transcriber: Transcriber, rate: int = 8000, max_s: float = MAX_UTTERANCE_S) -> None:
        _check_pcm(b"", rate)
        self.transcriber = transcriber
        self.rate = rate
        self.max_bytes = int(max_s * rate) * 2
        self._buf = bytearray()
        self._samples = 0  # samples fed since the start: media time
        self._utt_start = 0  # sample index of the first buffered sample

    @property
    def t(self) -> float:
        """Media time (seconds) of the end of the audio fed so far."""
        return self._samples / self.rate

    def feed(self, frame: bytes) -> None:
        if len(frame) % 2:
            raise SpeechError(f"frame must hold whole 16-bit samples, got {len(frame)} bytes")
        self._buf += frame
        self._samples += len(frame) // 2
        if len(self._buf) > self.max_bytes:  # keep the newest audio of an over-long prompt
            drop = len(self._buf) - self.max_bytes
            del self._buf[:drop]
        self._utt_start = self._samples - len(self._buf) // 2

    def reset(self) -> None:
        """Forget the buffered audio (e.g. after our own DTMF or speech)."""
        self._buf.clear()
        self._utt_start = self._samples

    def end_utterance(self) -> list[Segment]:
        """Transcribe the buffered utterance; segment times are media seconds since the first frame."""
        pcm, offset = bytes(self._buf), self._utt_start / self.rate
        self.reset()
        if not pcm:
            return []
        return [
            Segment(round(s.start + offset, 2), round(s.end + offset, 2), s.text)
            for s in self.transcriber.transcribe(pcm, self.rate)
        ]


def make_transcriber(settings: Any, call_id: str = "") -> Transcriber:
    """OpenAITranscriber when STT_BASE_URL is set, else the embedded SphinxTranscriber."""
    if getattr(settings, "stt_base_url", ""):
        model = getattr(settings, "stt_model", "") or STT_MODEL
        return OpenAITranscriber(settings.stt_base_url, settings.stt_api_key, model=model, call_id=call_id)
    return SphinxTranscriber()
