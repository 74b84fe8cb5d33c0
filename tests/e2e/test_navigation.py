"""End to end without a stored call flow: the worker transcribes each IVR prompt and chooses.

Two stacks on the sample companies of sim/companies (nav_bank, loop_co, callback_co):
* `nav_stack`: no LLM_BASE_URL / STT_BASE_URL: the embedded pocketsphinx + keyword chooser,
* `llm_stack`: a fake OpenAI-compatible server over real HTTP answers the transcription and the
  chat completion; its choice differs from what the keyword chooser would pick.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator

import pytest
from e2e_env import DEVICES, E2E_DB, HERE, PHONES, assert_no_channels, channels, with_db

from sim.demo import COMPANIES_DIR, Stack
from worker import db

sys.path.insert(0, str(HERE.parent / "nav"))
from nav_fake_openai import FakeOpenAI, chat_reply  # noqa: E402

pytestmark = pytest.mark.e2e

NAV_BANK = "+15550100105"      # billing = 2 -> 20 s hold -> agent; technical support = 3 -> goodbye
LOOP_CO = "+15550100106"       # the same menu forever
CALLBACK_CO = "+15550100107"   # "to receive a callback, press 1", else hold -> agent
NAV_BANK_MENU = "Thank you for calling Nav Bank. For billing, press 2. For technical support, press 3."
FINAL = set(db.FINAL_STATUSES) - {"transferred"}


def _stack(redis_url: str, workdir, env: dict[str, str]) -> Stack:
    st = Stack(workdir, redis_url=with_db(redis_url, E2E_DB), database_url=f"sqlite:///{workdir / 'nav.db'}",
               speed=20, phones=PHONES, companies=COMPANIES_DIR, heartbeat_s=1,
               queue_name=f"hs-e2e-nav-{secrets.token_hex(4)}",
               env={"RING_TIMEOUT": "8", "LAUNCH_RATE_PER_MINUTE": "1000", "DESK_RING_TIMEOUT": "4",
                    "MAX_HOLD_SECONDS": "600", "LOG_LEVEL": "INFO",
                    "RECORDINGS_DIR": str(workdir / "recordings"),
                    "LLM_BASE_URL": "", "STT_BASE_URL": "", "TTS_BASE_URL": "", **env})
    try:
        st.start_all()
        st.seed(NAV_BANK, None, devices=DEVICES)
    except BaseException:
        st.stop()
        raise
    return st


@pytest.fixture(scope="module")
def nav_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = _stack(redis_url, tmp_path_factory.mktemp("e2e-nav"), {})
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="module")
def fake_ai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def llm_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
              fake_ai: FakeOpenAI) -> Iterator[Stack]:
    st = _stack(redis_url, tmp_path_factory.mktemp("e2e-llm"),
                {"LLM_BASE_URL": fake_ai.base_url, "LLM_MODEL": "fake-model", "LLM_API_KEY": "sk-test",
                 "STT_BASE_URL": fake_ai.base_url, "STT_API_KEY": "sk-test"})
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(autouse=True)
def _clean_switch(request: pytest.FixtureRequest) -> Iterator[None]:
    """(Replaces conftest's: these tests use their own stacks.) A failed test leaves no legs behind."""
    yield
    for name in ("nav_stack", "llm_stack"):
        if name in request.fixturenames:
            st = request.getfixturevalue(name)
            if channels(st) != {"row_count": 0}:
                st.esl_api("hupall MANAGER_REQUEST")


def _place(stack: Stack, number: str, intent: str, **extra) -> str:
    return stack.place_call({"number": number, "intent": intent, "transfer_to": "1000", **extra})


def _events(stack: Stack, call_id: str, type_: str) -> list[dict]:
    return [e["data"] for e in stack.timeline(call_id) if e["type"] == type_]


def _hang_up_and_check(stack: Stack, call_id: str) -> None:
    """The agent hangs up after the bridge; no leg stays up on the switch."""
    db.init_db(stack.database_url)
    with db.database.connection_context():
        row = db.Call.get_by_id(call_id)
    stack.esl_api(f"uuid_kill {row.company_uuid}")
    assert stack.wait_final(call_id, timeout=30)["status"] == "transferred"
    assert_no_channels(stack)


def test_flowless_menu_with_embedded_recogniser_and_keywords(nav_stack: Stack):
    call_id = _place(nav_stack, NAV_BANK, "talk to a person about my bill")
    call = nav_stack.wait_status(call_id, {"transferred"} | FINAL, timeout=90)
    assert call["status"] == "transferred", call
    prompts = _events(nav_stack, call_id, "ivr.prompt")
    assert prompts and "billing" in prompts[0]["text"], prompts
    assert 0 <= prompts[0]["start"] < prompts[0]["end"]
    assert [e["digits"] for e in _events(nav_stack, call_id, "ivr.dtmf")] == ["2"]
    actions = _events(nav_stack, call_id, "ivr.action")
    assert actions[0]["action"] == "dtmf" and "fallback" in actions[0]["reason"], actions
    assert call["hold_started_at"] and call["bridged_at"]
    _hang_up_and_check(nav_stack, call_id)


def test_flowless_menu_with_an_openai_compatible_server(llm_stack: Stack, fake_ai: FakeOpenAI):
    fake_ai.requests.clear()
    fake_ai.script("/v1/audio/transcriptions", (200, {"text": NAV_BANK_MENU}))
    answer = {"action": "dtmf", "digits": "2", "confidence": 0.9, "reason": "internet bills are billing"}
    fake_ai.script("/v1/chat/completions", chat_reply(json.dumps(answer)))
    # The keyword chooser would press 3 (technical support: a dead end) for this intent.
    call_id = _place(llm_stack, NAV_BANK, "my internet is down")
    call = llm_stack.wait_status(call_id, {"transferred"} | FINAL, timeout=90)
    assert call["status"] == "transferred", call
    paths = [r["path"] for r in fake_ai.requests]
    assert "/v1/audio/transcriptions" in paths and "/v1/chat/completions" in paths, paths
    chat = next(r for r in fake_ai.requests if r["path"] == "/v1/chat/completions")
    assert chat["json"]["model"] == "fake-model"
    assert "technical support" in json.dumps(chat["json"]["messages"])
    assert [e["digits"] for e in _events(llm_stack, call_id, "ivr.dtmf")] == ["2"]
    assert _events(llm_stack, call_id, "ivr.prompt")[0]["text"] == NAV_BANK_MENU
    _hang_up_and_check(llm_stack, call_id)


def test_menu_loop_tries_zero_then_gives_up(nav_stack: Stack):
    call_id = _place(nav_stack, LOOP_CO, "talk to a person about my bill")
    final = nav_stack.wait_final(call_id, timeout=120)
    assert (final["status"], final["status_reason"]) == ("failed", "navigation_loop"), final
    digits = [e["digits"] for e in _events(nav_stack, call_id, "ivr.dtmf")]
    assert digits[:2] == ["2", "2"] and digits[2] == "0", digits
    assert len(_events(nav_stack, call_id, "ivr.prompt")) == 4
    assert not final["hold_started_at"]
    assert_no_channels(nav_stack)


def test_callback_offer_declined_by_default(nav_stack: Stack):
    call_id = _place(nav_stack, CALLBACK_CO, "talk to a person about my bill")
    call = nav_stack.wait_status(call_id, {"transferred"} | FINAL, timeout=90)
    assert call["status"] == "transferred", call
    assert _events(nav_stack, call_id, "ivr.dtmf") == []
    actions = _events(nav_stack, call_id, "ivr.action")
    assert actions[-1]["action"] == "hold" and "callback" in actions[-1]["reason"], actions
    _hang_up_and_check(nav_stack, call_id)


def test_callback_offer_accepted(nav_stack: Stack):
    call_id = _place(nav_stack, CALLBACK_CO, "talk to a person about my bill", options={"callback": "accept"})
    final = nav_stack.wait_final(call_id, timeout=90)
    assert (final["status"], final["status_reason"]) == ("canceled", "callback_accepted"), final
    assert [e["digits"] for e in _events(nav_stack, call_id, "ivr.dtmf")] == ["1"]
    assert not final["hold_started_at"]
    assert_no_channels(nav_stack)
