"""Prompts: rendered once with espeak-ng + sox into 8 kHz mono 16-bit WAV, cached by text."""

from __future__ import annotations

import wave

import pytest

from worker.prompts import CONNECTING, Prompts, file_name, whisper_text


def test_file_name_is_stable_and_text_specific():
    assert file_name("hello") == file_name("  hello ")
    assert file_name("hello") != file_name("hello there")
    assert file_name("x").startswith("prompt-") and file_name("x").endswith(".wav")
    with pytest.raises(ValueError, match="empty"):
        file_name("   ")


def test_renders_phone_rate_wav_once(tmp_path):
    prompts = Prompts(tmp_path)
    path = prompts.connecting()
    assert path.endswith(file_name(CONNECTING))
    with wave.open(path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        seconds = w.getnframes() / w.getframerate()
    assert 1.0 < seconds < 6.0          # a short sentence, not silence and not garbage
    mtime = (tmp_path / file_name(CONNECTING)).stat().st_mtime_ns
    assert prompts.connecting() == path
    assert (tmp_path / file_name(CONNECTING)).stat().st_mtime_ns == mtime   # not rendered again


def test_whisper_names_the_company(tmp_path):
    assert "Acme Bank" in whisper_text("Acme Bank")
    assert Prompts(tmp_path).whisper("Acme Bank") != Prompts(tmp_path).whisper("Other Co")
