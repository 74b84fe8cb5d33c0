"""Golden tests: the per-frame state string for real recordings of each class, derived once and frozen.

Sources: Debian asterisk prompts and opsound hold music, espeak-ng speech, and
generated tones, each with a little line noise.  A change in any of these
strings is a change in behaviour: look at it before refreezing.
"""

from __future__ import annotations

import numpy as np
import pytest
from audio_helpers import MOH, PROMPTS, add_noise, cadence, level, rle, run, silence, sound, speech, tone


def make(name: str, rate: int) -> np.ndarray:
    if name == "asterisk_prompt":
        prompt = level(sound(f"{PROMPTS}/queue-periodic-announce.wav", rate), -20)
        return add_noise(np.concatenate([silence(0.5, rate), prompt, silence(1.0, rate)]))
    if name == "opsound_music":
        return add_noise(level(sound(f"{MOH}/manolo_camp-morning_coffee.wav", rate, 20.0, 6.0), -20))
    if name == "espeak_speech":
        words = level(speech("Good morning, you are speaking with David in billing.", rate), -20)
        return add_noise(np.concatenate([silence(0.5, rate), words, silence(1.0, rate)]))
    if name == "silence":
        return silence(2.0, rate)
    if name == "ringback_na":
        return add_noise(cadence([440, 480], [2.0, 4.0], 7.0, rate))
    if name == "busy_na":
        return add_noise(cadence([480, 620], [0.5, 0.5], 6.0, rate))
    if name == "sit":
        seq = [tone([913.8], 0.274, rate), tone([1370.6], 0.274, rate), tone([1776.7], 0.38, rate)]
        return add_noise(np.concatenate([silence(0.3, rate), *seq, silence(0.5, rate)]))
    if name == "beep":
        beep = level(sound(f"{PROMPTS}/beep.wav", rate), -16)
        return add_noise(np.concatenate([silence(0.5, rate), beep, silence(0.5, rate)]))
    raise AssertionError(name)


GOLDEN = {
    ("asterisk_prompt", 8000): "silence*42 music*33 speech*350 silence*41",
    ("opsound_music", 8000): "silence*14 music*286",
    ("espeak_speech", 8000): "silence*39 music*16 speech*110 silence*50",
    ("silence", 8000): "silence*100",
    ("ringback_na", 8000): "silence*36 ringback*79 silence*202 ringback*33",
    ("busy_na", 8000): "silence*206 busy*35 silence*15 busy*35 silence*9",
    ("sit", 8000): "silence*21 sit*56 silence*9",
    ("beep", 8000): "silence*31 beep*31 silence*9",
    ("asterisk_prompt", 16000): "silence*42 music*33 speech*350 silence*41",
    ("opsound_music", 16000): "silence*14 music*286",
    ("espeak_speech", 16000): "silence*39 music*16 speech*110 silence*50",
    ("silence", 16000): "silence*100",
    ("ringback_na", 16000): "silence*38 ringback*77 silence*203 ringback*32",
    ("busy_na", 16000): "silence*206 busy*35 silence*15 busy*35 silence*9",
    ("sit", 16000): "silence*21 sit*56 silence*9",
    ("beep", 16000): "silence*31 beep*31 silence*9",
}


@pytest.mark.parametrize(("name", "rate"), sorted(GOLDEN))
def test_per_frame_states_are_frozen(name, rate):
    det, _ = run(make(name, rate), rate)
    assert det.frame_states is not None
    assert rle(det.frame_states) == GOLDEN[(name, rate)]
