"""Spoken prompts the agent (and the user) hear, rendered once with espeak-ng.

The worker asks the switch to play a prompt with `uuid_broadcast <uuid> <path>`,
so the file must be readable by the switch too: `directory` is a path both see
(in compose, a shared volume).  Files are 8 kHz mono 16-bit WAV, the trunk's
native rate, named after a hash of their text so that any worker renders the
same text to the same file and a re-render is never needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000          # Hz: what the trunk carries (PCMU/PCMA), no resampling in the switch
VOICE = "en-us"             # espeak-ng voice
WORDS_PER_MINUTE = 165      # espeak-ng -s: a calm, clear pace for a phone line
RENDER_TIMEOUT_S = 20.0     # espeak-ng + sox for one sentence takes well under a second

CONNECTING = "One moment please, I'm connecting you now."
REASSURE = "Thank you for waiting. I'm still connecting you, please stay on the line."
NO_ANSWER_SORRY = "I'm sorry, the person you are calling is not available. Goodbye."


def whisper_text(company: str) -> str:
    """What the user hears before the bridge when screening is on."""
    return f"{company} is on the line. Press 1 to take the call."


def file_name(text: str) -> str:
    """Stable file name for a prompt text (pure)."""
    if not text or not text.strip():
        raise ValueError("prompt text must not be empty")
    digest = hashlib.sha1(text.strip().encode("utf-8"), usedforsecurity=False).hexdigest()[:16]
    return f"prompt-{digest}.wav"


class Prompts:
    """Renders prompt texts to WAV files in `directory` (once) and returns their absolute paths."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).resolve()

    def path(self, text: str) -> str:
        target = self.directory / file_name(text)
        if not target.exists():
            self._render(text, target)
        return str(target)

    def connecting(self) -> str:
        return self.path(CONNECTING)

    def reassure(self) -> str:
        return self.path(REASSURE)

    def whisper(self, company: str) -> str:
        return self.path(whisper_text(company))

    def warm(self) -> None:
        """Render the fixed prompts now (at worker start), so no call waits on espeak-ng."""
        for text in (CONNECTING, REASSURE, NO_ANSWER_SORRY):
            self.path(text)

    def _render(self, text: str, target: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            raw = Path(tmp) / "raw.wav"
            out = Path(tmp) / "out.wav"
            try:
                subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(raw), text],
                               check=True, capture_output=True, timeout=RENDER_TIMEOUT_S)
                subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                                "-e", "signed-integer", str(out)],
                               check=True, capture_output=True, timeout=RENDER_TIMEOUT_S)
            except FileNotFoundError as exc:
                raise RuntimeError(f"cannot render prompts: {exc.filename} is not installed "
                                   "(Debian packages espeak-ng and sox)") from exc
            except subprocess.CalledProcessError as exc:
                detail = exc.stderr.decode(errors="replace")
                raise RuntimeError(f"cannot render prompt {text!r}: {detail}") from exc
            os.replace(out, target)      # atomic: other workers never see a half-written file
        log.info("prompt rendered: %s (%r)", target, text)
