"""A detector renewed for the hold after menus keeps what the old one learned about the call.

The worker starts a fresh detector for the hold when the menus fooled the old one. A fresh decider
knows nothing of the call, so the menu's next prompt (a short line, then the IVR waiting for a key)
looks like a direct answer. `HoldDetector.inherit` (`HumanDecider.inherit`) carries the recorded
voices over: the same recorded voice then waits for a reply, while another voice is still a person.
"""

from __future__ import annotations

import numpy as np

from tests.audio.audio_helpers import PROMPTS, pcm, silence, sound, speech
from worker.audio.detector import HoldDetector


def menus() -> np.ndarray:
    """An IVR read twice in one recorded voice, with the wait for a key between."""
    welcome, instr = sound(f"{PROMPTS}/dir-welcome.wav"), sound(f"{PROMPTS}/dir-instr.wav")
    return np.concatenate([welcome, silence(0.3), instr, silence(3.0), welcome, silence(0.3), instr,
                           silence(1.0)])


def renewed(after: np.ndarray, inherit: bool) -> HoldDetector:
    old = HoldDetector(8000)
    old.feed(pcm(menus()))
    old.finish()
    assert old.decider.recorded, "the menus' voice was remembered as a recording"
    new = HoldDetector(8000, known=old.fingerprints())
    if inherit:
        new.inherit(old)
    new.feed(pcm(after))
    new.finish()
    return new


def test_another_prompt_in_the_menus_voice_is_not_a_person_after_renewal():
    # a prompt never heard before (no fingerprint match), in the same recorded voice
    prompt = np.concatenate([sound(f"{PROMPTS}/agent-pass.wav"), silence(6.0)])
    assert renewed(prompt, inherit=False).outcome == "human"      # without the call's context
    det = renewed(prompt, inherit=True)
    assert det.outcome is None and det.human_at is None and det.likely_human_at is None


def test_another_voice_after_the_menus_is_still_a_person():
    person = np.concatenate([speech("Hello, thanks for calling, this is Sam.", voice="en-us+m3"),
                             silence(6.0)])
    for inherit in (False, True):
        det = renewed(person, inherit)
        assert det.outcome == "human", inherit
        assert det.human_at is not None and det.human_at < len(person) / 8000 - 3.0


def test_inherit_copies_context_not_decisions():
    old = HoldDetector(8000)
    old.feed(pcm(np.concatenate([menus(), sound(f"{PROMPTS}/agent-pass.wav"), silence(6.0)])))
    assert old.outcome == "human"                                   # the menus fooled it
    new = HoldDetector(8000)
    new.inherit(old)
    assert new.outcome is None and new.decider.menus_heard
    assert [r.tolist() for r in new.decider.recorded] == [r.tolist() for r in old.decider.recorded]
    new.decider.recorded.clear()
    assert old.decider.recorded                                     # a copy, not shared
