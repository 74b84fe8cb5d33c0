"""A scripted company's behaviour over media time: pure, one 20 ms frame at a time.

``CompanyCall(scenario, renderer)`` is driven by the channel's media clock:
``early_frame()`` before the answer, ``next_frame()`` after it (returns the
frame and, when the company hangs up, its hangup cause).  ``dtmf(d)`` delivers a
digit we sent, ``hear(frame)`` the audio we send (our prompt to the agent),
``bridge()`` says the user's phone was connected.  No sockets, clocks or
threads: the same calls give the same frames at any speed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from sim import audio
from sim.scenario import AudioRenderer, Scenario

log = logging.getLogger(__name__)

FRAME = audio.FRAME_SAMPLES
AGENT_PATIENCE_S = 5.0  # silence after the greeting before "hello? are you there?"
AGENT_HANGUP_AFTER_S = 10.0  # silence after that before the agent hangs up
AGENT_WAIT_ASKED_S = 30.0  # how long the agent waits once it heard us ("one moment, connecting you")
HEAR_RMS = 300.0  # RMS above which the agent "hears" us (16-bit scale)
DEFAULT_AFTER_BRIDGE = "Hi, thanks for holding. How can I help you today?"
DEFAULT_REPROMPT = "Hello? Are you there?"
BEEP_FILE = "/usr/share/asterisk/sounds/en/beep.wav"

Frames = Generator[np.ndarray, None, str | None]


class CompanyCall:
    def __init__(self, scenario: Scenario, renderer: AudioRenderer | None = None) -> None:
        self.sc = scenario
        self.r = renderer or AudioRenderer()
        self.frames = 0  # media frames produced since the answer
        self.phase = "ringing"
        self.node = ""
        self.log: list[tuple[float, str]] = []  # (media seconds since answer, what happened)
        self.digits: list[str] = []
        self.bridged = False
        self.heard_us = False
        self._digits: deque[str] = deque()
        self._early = self._pcm(scenario.data.get("early_media"), "ivr")
        self._early_pos = 0
        self._gen: Frames | None = None
        self.listeners: list[Callable[[str], None]] = []  # called with each log line (tests wait on them)
        self._prerender()

    # -- audio -------------------------------------------------------------------------
    def _pcm(self, spec: Any, who: str) -> np.ndarray:
        return self.r.render(spec, self.sc.voice(who))

    def _prerender(self) -> None:
        d = self.sc.data
        for node in d.get("ivr", {}).get("nodes", {}).values():
            self._pcm(node["prompt"], "ivr")
            self._pcm(node.get("invalid"), "ivr")
        hold = d.get("hold", {})
        for k in ("music", "announcement"):
            self._pcm(hold.get(k), "ivr")
        if "callback_offer" in hold:
            self._pcm(hold["callback_offer"]["prompt"], "ivr")
            self._pcm(hold["callback_offer"].get("confirm"), "ivr")
        agent = d.get("agent")
        if agent:
            self._pcm(agent["greeting"], "agent")
            self._pcm(agent.get("reprompt", {"say": DEFAULT_REPROMPT}), "agent")
            self._pcm(agent.get("after_bridge", {"say": DEFAULT_AFTER_BRIDGE}), "agent")
        if "voicemail" in d:
            self._pcm(d["voicemail"]["greeting"], "ivr")

    @property
    def media_seconds(self) -> float:
        return self.frames * audio.FRAME_MS / 1000

    def _note(self, what: str) -> None:
        self.log.append((round(self.media_seconds, 3), what))
        for listener in self.listeners:
            listener(what)
        log.debug("company %s: %s at %.2fs", self.sc.name, what, self.media_seconds)

    # -- inputs --------------------------------------------------------------------------
    def dtmf(self, digit: str) -> None:
        self.digits.append(digit)
        self._digits.append(digit)
        self._note(f"dtmf {digit}")

    def hear(self, frame: np.ndarray) -> None:
        if not self.heard_us and audio.energy(frame) > HEAR_RMS:
            self.heard_us = True
            self._note("heard caller audio")

    def bridge(self) -> None:
        self.bridged = True
        self._note("bridged")

    # -- outputs ----------------------------------------------------------------------------
    @property
    def early_seconds(self) -> float:
        return len(self._early) / audio.RATE

    @property
    def early_done(self) -> bool:
        return self._early_pos >= len(self._early)

    def early_frame(self) -> np.ndarray:
        chunk = self._early[self._early_pos : self._early_pos + FRAME]
        self._early_pos += FRAME
        return _pad(chunk)

    def answer(self) -> None:
        self.phase = "answered"
        self._gen = self._script()
        self._note("answered")

    def next_frame(self) -> tuple[np.ndarray, str | None]:
        """The next 20 ms the company sends, and a hangup cause when it hangs up."""
        if self._gen is None:
            self.answer()
        assert self._gen is not None
        try:
            frame = next(self._gen)
        except StopIteration as stop:
            self.phase = "hungup"
            self._note("hangs up")
            return np.zeros(FRAME, dtype=np.int16), (stop.value or "NORMAL_CLEARING")
        self.frames += 1
        return frame, None

    # -- the script ----------------------------------------------------------------------------
    def _script(self) -> Frames:
        d = self.sc.data
        target = d["ivr"]["start"] if "ivr" in d else ("hold" if "hold" in d else "agent")
        while True:
            if target == "hangup":
                return "NORMAL_CLEARING"
            if target == "hold":
                target = yield from self._hold()
            elif target == "agent":
                return (yield from self._agent())
            elif target == "voicemail":
                return (yield from self._voicemail())
            else:
                target = yield from self._ivr(target)

    def _play(self, pcm: np.ndarray, interruptible: bool = False) -> Generator[np.ndarray, None, bool]:
        """Yield pcm frame by frame; True if a digit interrupted it."""
        for i in range(0, len(pcm), FRAME):
            if interruptible and self._digits:
                return True
            yield _pad(pcm[i : i + FRAME])
        return False

    def _silence(self, seconds: float, stop_on_digit: bool = False) -> Generator[np.ndarray, None, bool]:
        for _ in range(int(round(seconds * 1000 / audio.FRAME_MS))):
            if stop_on_digit and self._digits:
                return True
            yield np.zeros(FRAME, dtype=np.int16)
        return bool(stop_on_digit and self._digits)

    def _ivr(self, name: str) -> Generator[np.ndarray, None, str]:
        node = self.sc.data["ivr"]["nodes"][name]
        self.phase, self.node = "ivr", name
        prompt = self._pcm(node["prompt"], "ivr")
        invalid = self._pcm(node.get("invalid", {"file": "invalid.wav"}), "ivr")
        choices = node.get("choices", {})
        plays = 0
        while True:
            self._note(f"prompt {name}")
            yield from self._play(prompt, interruptible=bool(choices))
            if "next" in node and not choices:
                return str(node["next"])
            got = yield from self._silence(float(node.get("timeout_seconds", 5)), stop_on_digit=True)
            if got:
                digit = self._digits.popleft()
                if digit in choices:
                    self._note(f"menu {name} -> {choices[digit]}")
                    return str(choices[digit])
                self._note(f"invalid {digit}")
                yield from self._play(invalid)
                self._digits.clear()
            elif "next" in node:
                return str(node["next"])
            plays += 1
            if plays > int(node.get("repeat", 2)):
                self._note(f"menu {name} gave up")
                return str(node.get("on_timeout", "hangup"))

    def _hold(self) -> Generator[np.ndarray, None, str]:
        hold = self.sc.data.get("hold", {"duration_seconds": 0})
        self.phase, self.node = "hold", "hold"
        self._note("hold started")
        music = self._pcm(
            hold.get("music", {"file": "/usr/share/asterisk/moh/macroform-cold_day.wav"}), "ivr"
        )
        if len(music) == 0:
            music = audio.silence(1)
        announcement = self._pcm(hold.get("announcement"), "ivr")
        every = float(hold.get("announce_every_seconds", 0) or 0)
        offer = hold.get("callback_offer")
        offer_every = float(offer.get("every_seconds", 30)) if offer else 0.0
        total = int(float(hold["duration_seconds"]) * 1000 / audio.FRAME_MS)
        every_f = int(every * 1000 / audio.FRAME_MS) if every and len(announcement) else 0
        offer_f = int(offer_every * 1000 / audio.FRAME_MS) if offer else 0
        pos = 0
        done = 0
        self._digits.clear()
        while done < total:
            if every_f and done and done % every_f == 0:
                self._note("hold announcement")
                for f in self._play(announcement):
                    done += 1
                    yield f
                continue
            if offer_f and done and done % offer_f == 0 and offer:
                self._note("callback offer")
                self._digits.clear()
                for f in self._play(self._pcm(offer["prompt"], "ivr")):
                    done += 1
                    yield f
                got = yield from self._silence(3, stop_on_digit=True)
                done += 150
                if got and self._digits.popleft() == offer["digit"]:
                    self._note("callback accepted")
                    yield from self._play(
                        self._pcm(offer.get("confirm", {"say": "Thank you. We will call you back."}), "ivr")
                    )
                    return "hangup"
                continue
            chunk = music[pos : pos + FRAME]
            pos += FRAME
            if pos >= len(music):
                pos = 0
            done += 1
            yield _pad(chunk)
        self._note("hold ended")
        return str(hold.get("then", "agent"))

    def _agent(self) -> Generator[np.ndarray, None, str]:
        agent = self.sc.data.get("agent") or {"greeting": {"say": "Hello, this is customer service."}}
        self.phase, self.node = "agent", "agent"
        self._note("agent greeting")
        self.heard_us = False
        yield from self._play(self._pcm(agent["greeting"], "agent"))
        yield from self._wait_agent(float(agent.get("patience_seconds", AGENT_PATIENCE_S)))
        if not self.heard_us and not self.bridged:
            self._note("agent reprompt")
            yield from self._play(self._pcm(agent.get("reprompt", {"say": DEFAULT_REPROMPT}), "agent"))
            yield from self._wait_agent(float(agent.get("hangup_after_seconds", AGENT_HANGUP_AFTER_S)))
        if self.heard_us and not self.bridged:
            self._note("agent waits for the transfer")
            yield from self._wait_agent(
                float(agent.get("wait_when_asked_seconds", AGENT_WAIT_ASKED_S)), until_heard=False
            )
        if self.bridged:
            self._note("agent talks to the user")
            yield from self._play(
                self._pcm(agent.get("after_bridge", {"say": DEFAULT_AFTER_BRIDGE}), "agent")
            )
            while True:
                yield np.zeros(FRAME, dtype=np.int16)
        self._note("agent gives up")
        return "NORMAL_CLEARING"

    def _wait_agent(self, seconds: float, until_heard: bool = True) -> Generator[np.ndarray, None, None]:
        for _ in range(int(seconds * 1000 / audio.FRAME_MS)):
            if self.bridged or (until_heard and self.heard_us):
                return
            yield np.zeros(FRAME, dtype=np.int16)

    def _voicemail(self) -> Generator[np.ndarray, None, str]:
        vm = self.sc.data.get("voicemail") or {"greeting": {"say": "Please leave a message after the tone."}}
        self.phase, self.node = "voicemail", "voicemail"
        self._note("voicemail greeting")
        yield from self._play(self._pcm(vm["greeting"], "ivr"))
        if vm.get("beep", True):
            self._note("voicemail beep")
            beep = self.r.render({"file": BEEP_FILE}) if _exists(BEEP_FILE) else audio.tone([1000], 500)
            yield from self._play(beep)
        yield from self._silence(float(vm.get("max_seconds", 10)))
        return "NORMAL_CLEARING"


def _pad(chunk: np.ndarray) -> np.ndarray:
    if len(chunk) == FRAME:
        return chunk
    out = np.zeros(FRAME, dtype=np.int16)
    out[: len(chunk)] = chunk
    return out


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_file()
