"""Simulated SIP desk phones registered on the stand-in switch.

Spec string (``--phones``): ``EXT:answer:SECS[:dtmf=DIGITS][:hangup=SECS]``, ``EXT:noanswer``,
``EXT:unregistered``, comma separated, e.g. ``1000:answer:2:dtmf=1,1001:noanswer``.
A phone that answers sends silence; its DTMF script is pressed after the first
prompt played to it ends (the whisper), or 1 s after the answer.  In-process
tests read what reached it: ``switch.phone("1000").bridged_to`` and
``.heard_pcm()`` (the company audio it received while bridged, 8 kHz int16).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gevent
import gevent.event
import numpy as np

CONTACT_HOST = "127.0.0.1"
FIRST_CONTACT_PORT = 5072  # like the captured sipp phone; each phone gets the next port
DTMF_DELAY_S = 1.0  # media seconds after answer before a scripted press (no whisper played)


class PhoneSpecError(ValueError):
    """A --phones entry cannot be parsed."""


@dataclass
class Phone:
    ext: str
    mode: str  # answer | noanswer | unregistered
    answer_after: float = 0.0  # seconds (divided by speed)
    dtmf: str = ""
    hangup_after: float | None = (
        None  # the user hangs up this many seconds after answering (divided by speed)
    )
    port: int = FIRST_CONTACT_PORT
    calls: list[str] = field(default_factory=list)  # channel uuids that rang this phone
    bridged_to: str | None = None  # company channel uuid while/after bridged
    bridged_event: gevent.event.Event = field(default_factory=gevent.event.Event)
    answered_event: gevent.event.Event = field(default_factory=gevent.event.Event)
    audio_event: gevent.event.Event = field(default_factory=gevent.event.Event)  # set on each received frame
    _heard: list[np.ndarray] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        return self.mode != "unregistered"

    @property
    def contact(self) -> str:
        return f"sofia/internal/sip:{self.ext}@{CONTACT_HOST}:{self.port};transport=udp"

    def receive(self, frame: np.ndarray) -> None:
        self._heard.append(frame.copy())
        self.audio_event.set()

    def wait_heard(self, seconds: float, timeout: float) -> bool:
        """Wait until `seconds` of company audio reached the phone (media seconds)."""
        with gevent.Timeout(timeout, False):
            while self.heard_seconds() < seconds:
                self.audio_event.clear()
                self.audio_event.wait()
            return True
        return False

    def heard_pcm(self) -> np.ndarray:
        return np.concatenate(self._heard) if self._heard else np.zeros(0, dtype=np.int16)

    def heard_seconds(self) -> float:
        return sum(len(f) for f in self._heard) / 8000


def parse_phones(spec: str) -> dict[str, Phone]:
    phones: dict[str, Phone] = {}
    for i, item in enumerate(p.strip() for p in (spec or "").split(",")):
        if not item:
            continue
        parts = item.split(":")
        ext = parts[0]
        if not ext.isdigit():
            raise PhoneSpecError(f"phone {item!r}: extension must be digits")
        if len(parts) < 2 or parts[1] not in ("answer", "noanswer", "unregistered"):
            raise PhoneSpecError(f"phone {item!r}: mode must be answer, noanswer or unregistered")
        phone = Phone(ext=ext, mode=parts[1], port=FIRST_CONTACT_PORT + i)
        rest = parts[2:]
        if phone.mode == "answer":
            if not rest:
                raise PhoneSpecError(f"phone {item!r}: answer needs seconds, e.g. {ext}:answer:2")
            try:
                phone.answer_after = float(rest[0])
            except ValueError as exc:
                raise PhoneSpecError(f"phone {item!r}: bad seconds {rest[0]!r}") from exc
            rest = rest[1:]
        for opt in rest:
            if opt.startswith("dtmf="):
                digits = opt[5:]
                if not digits or any(c not in "0123456789*#ABCD" for c in digits):
                    raise PhoneSpecError(f"phone {item!r}: bad dtmf {digits!r}")
                phone.dtmf = digits
            elif opt.startswith("hangup="):
                try:
                    phone.hangup_after = float(opt[7:])
                except ValueError as exc:
                    raise PhoneSpecError(f"phone {item!r}: bad hangup seconds {opt[7:]!r}") from exc
            else:
                raise PhoneSpecError(f"phone {item!r}: unknown option {opt!r}")
        if ext in phones:
            raise PhoneSpecError(f"phone {ext} listed twice")
        phones[ext] = phone
    return phones
