"""sim.company: the scripted company as a pure frame-by-frame state machine (no sockets, no clock)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.company import CompanyCall
from sim.scenario import validate_scenario


def run(
    data: dict[str, Any],
    max_frames: int = 20000,
    dtmf_at: dict[int, str] | None = None,
    hear_at: int | None = None,
    bridge_at: int | None = None,
) -> tuple[CompanyCall, int, str | None]:
    company = CompanyCall(validate_scenario(data, "test"))
    company.answer()
    for i in range(max_frames):
        if dtmf_at and i in dtmf_at:
            company.dtmf(dtmf_at[i])
        if hear_at is not None and i == hear_at:
            company.hear(np.full(160, 3000, dtype=np.int16))
        if bridge_at is not None and i == bridge_at:
            company.bridge()
        frame, cause = company.next_frame()
        assert frame.dtype == np.int16 and len(frame) == 160
        if cause:
            return company, i, cause
    return company, max_frames, None


def whats(company: CompanyCall) -> list[str]:
    return [w for _, w in company.log]


BASE = {"number": "+15551230", "name": "T", "outcome": "answer"}


def test_menu_times_out_after_its_repeats() -> None:
    data = {
        **BASE,
        "ivr": {
            "start": "m",
            "nodes": {
                "m": {
                    "prompt": {"tone": [500], "ms": 200},
                    "choices": {"1": "hold"},
                    "timeout_seconds": 1,
                    "repeat": 2,
                    "on_timeout": "hangup",
                }
            },
        },
    }
    company, frames, cause = run(data)
    assert cause == "NORMAL_CLEARING"
    assert whats(company).count("prompt m") == 3 and "menu m gave up" in whats(company)
    assert 3 * 60 <= frames <= 3 * 60 + 5  # 3 x (0.2 s prompt + 1 s wait) of media time


def test_hold_announcements_then_voicemail_with_beep() -> None:
    data = {
        **BASE,
        "hold": {
            "music": {"tone": [300], "ms": 1000},
            "announcement": {"silence": 0.5},
            "announce_every_seconds": 2,
            "duration_seconds": 7,
            "then": "voicemail",
        },
        "voicemail": {"greeting": {"tone": [600], "ms": 500}, "max_seconds": 1},
    }
    company, frames, cause = run(data)
    w = whats(company)
    assert cause == "NORMAL_CLEARING"
    assert w.count("hold announcement") == 3 and w.index("hold ended") < w.index("voicemail greeting")
    assert "voicemail beep" in w


def test_callback_offer_accepted_hangs_up() -> None:
    data = {
        **BASE,
        "hold": {
            "music": {"tone": [300], "ms": 1000},
            "duration_seconds": 60,
            "callback_offer": {
                "prompt": {"silence": 0.2},
                "digit": "1",
                "every_seconds": 2,
                "confirm": {"silence": 0.2},
            },
        },
    }
    company, frames, cause = run(data, dtmf_at={110: "1"})
    assert cause == "NORMAL_CLEARING" and "callback accepted" in whats(company)
    assert frames < 60 * 50


def test_agent_waits_once_asked_and_talks_when_bridged() -> None:
    data = {
        **BASE,
        "agent": {
            "greeting": {"tone": [700], "ms": 400},
            "patience_seconds": 2,
            "wait_when_asked_seconds": 5,
            "after_bridge": {"tone": [900], "ms": 400},
        },
    }
    company, frames, cause = run(data, max_frames=1000, hear_at=40, bridge_at=200)
    w = whats(company)
    assert cause is None
    assert (
        w.index("heard caller audio")
        < w.index("agent waits for the transfer")
        < w.index("agent talks to the user")
    )
    assert "agent reprompt" not in w


def test_agent_reprompts_then_hangs_up_alone() -> None:
    data = {
        **BASE,
        "agent": {
            "greeting": {"tone": [700], "ms": 400},
            "patience_seconds": 1,
            "reprompt": {"tone": [800], "ms": 200},
            "hangup_after_seconds": 1,
        },
    }
    company, frames, cause = run(data)
    assert cause == "NORMAL_CLEARING" and whats(company)[-2:] == ["agent gives up", "hangs up"]
    assert frames == 20 + 50 + 10 + 50


def test_same_frames_whatever_the_caller_does_between_ticks() -> None:
    data = {
        **BASE,
        "ivr": {"start": "m", "nodes": {"m": {"prompt": {"tone": [437, 1013], "ms": 900}, "next": "hangup"}}},
    }
    a = CompanyCall(validate_scenario(data, "a"))
    b = CompanyCall(validate_scenario(data, "b"))
    fa = [a.next_frame()[0].tobytes() for _ in range(45)]
    fb = [b.next_frame()[0].tobytes() for _ in range(45)]
    assert fa == fb and len(set(fa)) > 20
