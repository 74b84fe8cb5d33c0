"""Text to speech for SPEAK steps and spoken menu answers: a cached WAV file per text.

    path = synthesize("one two three four", rate=8000)      # mono 16-bit WAV, ready for uuid_broadcast

espeak-ng (then sox to the call's rate) is the embedded default; with
Settings.tts_base_url set, an OpenAI-compatible `audio.speech` API is used
instead (wav or raw 24 kHz pcm answers, converted by sox).  Files are cached
by a hash of (engine, model, voice, rate, text) under `cache_dir`, written
atomically, so many calls share one rendering.

`spoken_digits("1234")` -> "one two three four": account numbers are always
read digit by digit, never as a large number (pure).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

from worker.errors import SpeechError

log = logging.getLogger(__name__)

ESPEAK_VOICE = "en-us"
ESPEAK_SPEED_WPM = 130  # words per minute; IVR speech recognisers like a calm pace
ESPEAK_WORD_GAP = 6  # extra pause between words, units of 10 ms
TTS_MODEL = "tts-1"  # OpenAI-compatible defaults (Settings.tts_model / tts_voice, from TTS_MODEL / TTS_VOICE)
TTS_VOICE = "alloy"
TTS_TIMEOUT_S = 20.0
OPENAI_PCM_RATE = 24000  # response_format "pcm": raw 16-bit LE mono at 24 kHz
SUBPROCESS_TIMEOUT_S = 30.0
RATES = (8000, 16000)

DIGIT_WORDS = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
    "#": "pound",
    "*": "star",
}
_HAS_DIGIT = re.compile(r"[0-9#*]")


def spoken_digits(text: str) -> str:
    """Digits (and # *) read one by one; letters in codes spelled; other words kept (pure).

    "1 2 3 4" and "1234" -> "one two three four"; "AB-12" -> "A B one two";
    "account 1234" -> "account one two three four".
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    out: list[str] = []
    for token in re.split(r"[\s,.\-/()]+", text.strip()):
        if not token:
            continue
        if _HAS_DIGIT.search(token):
            out.extend(DIGIT_WORDS.get(ch, ch.upper()) for ch in token if ch.isalnum() or ch in "#*")
        else:
            out.append(token)
    return " ".join(out)


def _cache_dir(cache_dir: str | os.PathLike[str] | None, settings: Any) -> Path:
    if cache_dir:
        d = Path(cache_dir)
    elif settings is not None and str(getattr(settings, "recordings_dir", "") or ""):
        d = Path(settings.recordings_dir) / "tts"
    else:
        d = Path(tempfile.gettempdir()) / "hold-slayer-tts"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(argv: list[str], stdin: bytes | None = None) -> None:
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise SpeechError(f"{argv[0]} is not installed (Debian package {argv[0]})") from exc
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"{argv[0]} took more than {SUBPROCESS_TIMEOUT_S}s") from exc
    if proc.returncode != 0:
        raise SpeechError(
            f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:300]}"
        )


def _sox_to(src: Path, dst: Path, rate: int, raw_rate: int = 0) -> None:
    head = (
        ["-t", "raw", "-r", str(raw_rate), "-e", "signed-integer", "-b", "16", "-c", "1"] if raw_rate else []
    )
    _run(["sox", *head, str(src), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(dst)])


def _espeak(text: str, voice: str, rate: int, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        _run(
            [
                "espeak-ng",
                "-v",
                voice,
                "-s",
                str(ESPEAK_SPEED_WPM),
                "-g",
                str(ESPEAK_WORD_GAP),
                "--stdin",
                "-w",
                str(raw),
            ],
            text.encode(),
        )
        _sox_to(raw, out, rate)


def _openai_speech(text: str, voice: str, model: str, rate: int, out: Path, settings: Any) -> None:
    import openai

    client = openai.OpenAI(
        base_url=settings.tts_base_url,
        api_key=settings.tts_api_key or "not-needed",
        timeout=TTS_TIMEOUT_S,
        max_retries=2,
    )
    try:
        resp = client.audio.speech.create(model=model, voice=voice, input=text, response_format="wav")
        data = resp.read()
    except openai.OpenAIError as exc:
        raise SpeechError(f"speech API failed: {type(exc).__name__}: {exc}") from exc
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "speech.bin"
        src.write_bytes(data)
        if data[:4] == b"RIFF":
            _sox_to(src, out, rate)
        else:  # some servers answer raw pcm whatever was asked
            _sox_to(src, out, rate, raw_rate=OPENAI_PCM_RATE)


def synthesize(
    text: str,
    rate: int = 8000,
    voice: str | None = None,
    *,
    settings: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    model: str | None = None,
) -> str:
    """The path of a mono 16-bit WAV at `rate` saying `text` (rendered once, then cached)."""
    if not isinstance(text, str) or not text.strip():
        raise SpeechError("nothing to say: text is empty")
    if rate not in RATES:
        raise SpeechError(f"rate must be one of {RATES}, got {rate!r}")
    remote = bool(settings is not None and getattr(settings, "tts_base_url", ""))
    if remote:
        engine = "openai"
        voice = voice or getattr(settings, "tts_voice", "") or TTS_VOICE
        model = model or getattr(settings, "tts_model", "") or TTS_MODEL
    else:
        engine, voice, model = "espeak-ng", voice or ESPEAK_VOICE, ""
    key = hashlib.sha256(f"{engine}\0{model}\0{voice}\0{rate}\0{text}".encode()).hexdigest()[:32]
    path = _cache_dir(cache_dir, settings) / f"{key}.wav"
    if path.exists():
        return str(path)
    tmp = path.with_suffix(f".{os.getpid()}.{id(text)}.tmp.wav")
    try:
        if remote:
            _openai_speech(text, voice, str(model), rate, tmp, settings)
        else:
            _espeak(text, voice, rate, tmp)
        _check_wav(tmp, rate)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("tts: rendered %d chars with %s to %s", len(text), engine, path.name)
    return str(path)


def _check_wav(path: Path, rate: int) -> None:
    try:
        with wave.open(str(path)) as w:
            ok = (
                w.getframerate() == rate
                and w.getnchannels() == 1
                and w.getsampwidth() == 2
                and w.getnframes() > 0
            )
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"synthesized audio is not a WAV: {exc}") from exc
    if not ok:
        raise SpeechError(f"synthesized audio is not mono 16-bit {rate} Hz")
