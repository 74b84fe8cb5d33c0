"""Constants and helpers of the e2e tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from sim.demo import Stack

HERE = Path(__file__).resolve().parent
BANK = "+15550100100"          # IVR (1, 2), ~60 s of hold with an announcement, then an agent
BUSY = "+15550100486"
NO_ANSWER = "+15550100480"
IMPATIENT = "+15550100200"     # short hold; the agent hangs up soon after "connecting you"
PATIENT = "+15550100400"       # short hold; the agent waits long once told "connecting you"
LONG_HOLD = "+15550100300"     # an hour of hold music
UNKNOWN = "+15550100999"       # no such company: the carrier plays SIT + "not in service"
BANK_FLOW = [{"type": "DTMF", "digits": "1"}, {"type": "DTMF", "digits": "2"}, {"type": "HOLD"},
             {"type": "TRANSFER"}]
E2E_DB = 12                    # a Redis database of our own on the test server
PHONES = "1000:answer:2,1001:noanswer,1002:unregistered,1003:answer:1:dtmf=1,1004:answer:1"
DEVICES = ("1000", "1001", "1002", "1003", "1004")


CLEAR_S = 10.0     # seconds the switch may take to tear legs down after the call is final


def channels(stack: Stack) -> dict:
    return json.loads(stack.esl_api("show channels as json"))


def assert_no_channels(stack: Stack, within_s: float = CLEAR_S) -> None:
    """Every leg is down on the switch (`show channels` empty) within `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        rows = channels(stack)
        if rows == {"row_count": 0}:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"legs left up on the switch: {json.dumps(rows)[:500]}")
        time.sleep(0.2)    # polling the switch's state until a deadline


def with_db(url: str, number: int) -> str:
    """The same Redis server, another database (redis://h:p/N or unix://path?db=N)."""
    if url.startswith("unix://"):
        if "db=" in url:
            return re.sub(r"db=\d+", f"db={number}", url)
        return f"{url}{'&' if '?' in url else '?'}db={number}"
    return re.sub(r"(redis://[^/]+)(/\d*)?$", rf"\g<1>/{number}", url)
