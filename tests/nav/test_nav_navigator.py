"""FlowRunner, MenuNavigator and the embedded KeywordChooser (pure: no sockets, no clocks)."""

from collections.abc import Sequence
from typing import Any

import pytest

from worker.errors import InvalidCallFlow
from worker.llm import Choice, KeywordChooser, match_score, validate_choice
from worker.menu import MenuOption, parse_menu
from worker.navigator import (
    CALLBACK_ACCEPTED,
    DONE,
    NAVIGATION_FAILED,
    NAVIGATION_LOOP,
    NO_HUMAN,
    Action,
    FlowRunner,
    MenuNavigator,
    heard,
)
from worker.tts import spoken_digits

MAIN_MENU = (
    "Thank you for calling Acme. For sales, press 1. For billing and payments, press 2. "
    "For technical support, press 3. For fraud or a lost card, press 4. "
    "To speak to a representative, press 0."
)


# --- the fallback chooser --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "digits"),
    [
        ("dispute a charge on my December statement", "2"),
        ("pay my bill", "2"),
        ("my internet is not working", "3"),
        ("my card was stolen", "4"),
        ("talk to a person", "0"),
        ("I want to buy a new plan", "1"),
        ("zzz qqq", "0"),  # nothing fits: a person
    ],
)
def test_keyword_chooser_picks_by_intent(intent: str, digits: str) -> None:
    options = parse_menu(MAIN_MENU)
    choice = KeywordChooser().choose(intent, MAIN_MENU, options)
    assert (choice.action, choice.digits) == ("dtmf", digits), choice


def test_keyword_chooser_without_a_person_takes_other_then_waits() -> None:
    menu = parse_menu("for sales press 1 for all other questions press 9")
    assert KeywordChooser().choose("xyzzy", "", menu).digits == "9"
    assert KeywordChooser().choose("xyzzy", "", parse_menu("for sales press 1")).action == "wait"
    assert KeywordChooser().choose("billing", "", []).action == "wait"


def test_keyword_chooser_tolerates_misrecognised_labels() -> None:
    menu = [MenuOption("1", "sails"), MenuOption("2", "bellings and payments")]
    assert KeywordChooser().choose("billing question", "", menu).digits == "2"
    assert match_score("dispute a charge", "disputes") > match_score("dispute a charge", "sales")


def test_validate_choice_never_trusts_digits() -> None:
    menu = parse_menu("for billing press 2 for sales press 3")
    assert validate_choice(Choice("dtmf", digits="2"), menu) == ""
    assert validate_choice(Choice("dtmf", digits="0"), menu) == ""
    assert "not on the menu" in validate_choice(Choice("dtmf", digits="7"), menu)
    assert "not on the menu" in validate_choice(Choice("dtmf", digits="23"), menu)
    assert validate_choice(Choice("say", text="Representative"), menu) == ""
    assert "not a spoken option" in validate_choice(Choice("say", text="transfer all my money"), menu)
    assert "unknown action" in validate_choice(Choice("launch"), menu)


# --- MenuNavigator -----------------------------------------------------------------------------


class ScriptedChooser:
    """A chooser that answers what it is told (stands in for an LLM that misbehaves)."""

    def __init__(self, *answers: Choice) -> None:
        self.answers = list(answers)
        self.calls: list[Sequence[MenuOption]] = []

    def choose(
        self, intent: str, transcript: str, options: Sequence[MenuOption], history: Sequence[str] = ()
    ):
        self.calls.append(options)
        return self.answers.pop(0)


def test_navigator_presses_the_matching_option() -> None:
    nav = MenuNavigator("dispute a charge", {})
    act = nav.on_prompt(MAIN_MENU, 12.5)
    assert (act.kind, act.digits, act.status) == ("dtmf", "2", "")
    assert nav.history and nav.history[0].startswith("t=12.5s dtmf 2")


def test_navigator_holds_on_hold_messages() -> None:
    nav = MenuNavigator("billing", {})
    assert nav.on_prompt("Please hold, your call is important to us.", 3.0).kind == "hold"
    assert nav.on_prompt("Welcome to Acme.", 5.0).kind == "listen"


def test_navigator_loop_asks_for_a_person_then_gives_up() -> None:
    menu = "for sales press 1 for billing press 2 for support press 3"
    nav = MenuNavigator("pay my bill", {})
    kinds = [nav.on_prompt(menu, t) for t in (1.0, 20.0)]
    assert [(a.kind, a.digits) for a in kinds] == [("dtmf", "2"), ("dtmf", "2")]
    third = nav.on_prompt("for sails press one for billing press two for support press three", 40.0)
    assert (third.kind, third.digits) == ("dtmf", "0")  # no person option on this menu: 0
    fourth = nav.on_prompt(menu, 60.0)
    assert (fourth.kind, fourth.status) == ("end", NAVIGATION_LOOP)
    assert nav.status == NAVIGATION_LOOP
    assert nav.on_prompt(menu, 61.0).status == NAVIGATION_LOOP  # over is over


def test_navigator_loop_prefers_the_person_option_and_speech() -> None:
    nav = MenuNavigator("pay my bill", {})
    for _ in range(2):
        nav.on_prompt(MAIN_MENU)
    assert nav.on_prompt(MAIN_MENU).digits == "0"  # "to speak to a representative, press 0"
    spoken = MenuNavigator("billing", {})
    menu = "for sales say sales for billing say billing"
    for _ in range(2):
        assert spoken.on_prompt(menu).kind == "speak"
    act = spoken.on_prompt(menu)
    assert (act.kind, act.text) == ("speak", "representative")


CALLBACK = (
    "Our wait time is long. To receive a call back when an agent is free, press 1. "
    "Otherwise stay on the line."
)


def test_callback_declined_by_default() -> None:
    nav = MenuNavigator("billing", {})
    act = nav.on_prompt(CALLBACK, 90.0)
    assert act.kind == "hold" and act.digits == "" and act.status == ""


def test_callback_declined_among_other_options_is_never_chosen() -> None:
    chooser = ScriptedChooser(Choice("dtmf", digits="1", source="llm"))
    nav = MenuNavigator("billing", {"callback": "decline"}, chooser)
    act = nav.on_prompt("press 1 for a callback. press 2 for billing", 1.0)
    assert [o.digits for o in chooser.calls[0]] == ["2"]  # the offer is not even shown
    assert (act.kind, act.digits) == ("dtmf", "2")  # the LLM's "1" was rejected


def test_callback_accepted_presses_and_ends() -> None:
    nav = MenuNavigator("billing", {"callback": "accept"})
    act = nav.on_prompt(CALLBACK, 90.0)
    assert (act.kind, act.digits, act.status) == ("dtmf", "1", CALLBACK_ACCEPTED)


def test_bad_callback_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="callback must be"):
        MenuNavigator("billing", {"callback": "maybe"})


def test_llm_digits_not_on_the_menu_fall_back() -> None:
    chooser = ScriptedChooser(Choice("dtmf", digits="9", source="llm", reason="made up"))
    act = MenuNavigator("technical support", {}, chooser).on_prompt(MAIN_MENU)
    assert act.digits == "3"


def test_account_number_prompt_and_open_question() -> None:
    nav = MenuNavigator("billing", {"account_number": "123456"})
    act = nav.on_prompt("Please enter your account number followed by the pound key.")
    assert (act.kind, act.digits, act.secret) == ("dtmf", "123456#", True)
    assert act.to_event()["digits"] == "*******"
    again = nav.on_prompt("Please enter your account number, or press 0 for an operator.")
    assert (again.kind, again.digits) == ("dtmf", "0")  # sent once only
    mixed = MenuNavigator("billing", {"account_number": "42"})
    assert mixed.on_prompt("Enter your account number, or press 0 for an operator.").digits == "42#"
    ask = nav.on_prompt("In a few words, tell me why you're calling.")
    assert (ask.kind, ask.text) == ("speak", "billing")


# --- FlowRunner ----------------------------------------------------------------------------------


def run(runner: FlowRunner, results: dict[str, list[str]]) -> list[Action]:
    out = []
    for action in runner:
        out.append(action)
        queue = results.get(action.kind)
        runner.feed(queue.pop(0) if queue else None)
    return out


def test_flow_runs_steps_in_order() -> None:
    steps: list[dict[str, Any]] = [
        {"type": "LISTEN", "timeout_s": 10, "expect": ["billing"]},
        {"type": "DTMF", "digits": "2", "wait_after_ms": 300},
        {"type": "WAIT", "seconds": 2},
        {"type": "SPEAK", "say": "account_number"},
        {"type": "HOLD", "max_s": 600},
        {"type": "TRANSFER", "to": "1001"},
    ]
    runner = FlowRunner(steps, {"account_number": "1 2 3 4"})
    acts = run(runner, {"listen": ["for billing press two"], "hold": ["human"]})
    assert [(a.kind, a.step) for a in acts] == [
        ("listen", 0),
        ("dtmf", 1),
        ("wait", 2),
        ("speak", 3),
        ("hold", 4),
        ("transfer", 5),
        ("end", -1),
    ]
    assert acts[1].wait_after_ms == 300 and acts[2].timeout_s == 2.0 and acts[4].timeout_s == 600.0
    assert acts[3].text == "one two three four" and acts[3].secret
    assert acts[5].to == "1001" and acts[-1].status == DONE
    assert runner.transcripts == [(0, "for billing press two")]


def test_flow_listen_retry_then_replays_dtmf_then_fails() -> None:
    steps: list[dict[str, Any]] = [
        {"type": "DTMF", "digits": "1"},
        {"type": "LISTEN", "timeout_s": 5, "expect": ["billing"]},
    ]
    runner = FlowRunner(steps)
    acts = run(runner, {"listen": ["welcome", "please wait", "goodbye"]})
    assert [a.kind for a in acts] == ["dtmf", "listen", "listen", "dtmf", "listen", "end"]
    assert acts[-1].status == NAVIGATION_FAILED and "billing" in acts[-1].reason


def test_flow_listen_retry_succeeds_on_second_listen() -> None:
    steps: list[dict[str, Any]] = [
        {"type": "LISTEN", "timeout_s": 5, "expect": ["press 2", "billing"]},
        {"type": "DTMF", "digits": "2"},
    ]
    acts = run(FlowRunner(steps), {"listen": ["thank you for calling", "for payments press two"]})
    assert [a.kind for a in acts] == ["listen", "listen", "dtmf", "end"] and acts[-1].status == DONE


def test_flow_hold_timeout_ends_no_human() -> None:
    acts = run(FlowRunner([{"type": "HOLD"}, {"type": "TRANSFER"}]), {"hold": ["timeout"]})
    assert [a.kind for a in acts] == ["hold", "end"] and acts[-1].status == NO_HUMAN


def test_flow_send_protocol_and_dtmf_from_option() -> None:
    runner = FlowRunner(
        [{"type": "LISTEN", "timeout_s": 1}, {"type": "dtmf", "say": "account_number"}],
        {"account_number": "998877"},
    )
    assert next(runner).kind == "listen"
    act = runner.send("anything")
    assert (act.kind, act.digits, act.secret) == ("dtmf", "998877", True)
    assert runner.send(None).status == DONE
    with pytest.raises(StopIteration):
        next(runner)


@pytest.mark.parametrize(
    ("steps", "options", "message"),
    [
        ([], {}, "non-empty list"),
        ([{"type": "JUMP"}], {}, "unknown type"),
        ([{"type": "DTMF", "digits": "12x"}], {}, "no valid digits"),
        ([{"type": "SPEAK", "say": "account_number"}], {}, "account_number"),
        ([{"type": "WAIT", "seconds": -1}], {}, "seconds >= 0"),
        ([{"type": "LISTEN", "timeout_s": 3, "expect": "billing"}], {}, "list of keywords"),
        ([{"type": "SPEAK"}], {}, "needs text or say"),
        (["DTMF 2"], {}, "must be an object"),
    ],
)
def test_flow_errors_are_clear(steps, options, message: str) -> None:
    with pytest.raises(InvalidCallFlow, match=message):
        FlowRunner(steps, options)


def test_heard_normalises_number_words() -> None:
    assert heard("For billing, press two.", ["press 2"])
    assert heard("press 2 for billing", ["press two"])
    assert not heard("for sales press one", ["billing", "press 2"])


# --- account numbers are read digit by digit -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("1 2 3 4", "one two three four"),
        ("1234", "one two three four"),
        ("1000", "one zero zero zero"),
        ("12-34#", "one two three four pound"),
        ("AB12", "A B one two"),
        ("account 907", "account nine zero seven"),
        ("*0", "star zero"),
    ],
)
def test_spoken_digits(raw: str, spoken: str) -> None:
    assert spoken_digits(raw) == spoken


def test_submenu_with_the_same_keys_is_not_a_loop() -> None:
    nav = MenuNavigator("dispute a charge", {})
    main = "for sales press 1 for billing press 2 for support press 3"
    sub = "for payments press 1 for your balance press 2 for disputes press 3"
    for t in range(3):
        assert nav.on_prompt(main if t % 2 == 0 else sub, float(t)).status == ""
    assert nav.on_prompt(sub, 4.0).status == ""  # sub heard twice, main twice
    assert [e[2] for e in nav.seen] == [2, 2]


def test_person_intent_without_a_person_option_takes_a_staffed_one() -> None:
    menu = parse_menu("For branch hours, press 3. For accounts and cards, press 1.")
    choice = KeywordChooser().choose("talk to a person", "", menu)
    assert (choice.action, choice.digits) == ("dtmf", "1")
    assert KeywordChooser().choose("xyzzy", "", menu).action == "wait"


def test_nothing_fits_twice_then_guess_a_staffed_option() -> None:
    nav = MenuNavigator("xyzzy", {})
    menu = "for branch hours press 3 for new accounts press 1"
    assert nav.on_prompt(menu, 1.0).kind == "listen"
    act = nav.on_prompt(menu, 9.0)
    assert (act.kind, act.digits) == ("dtmf", "1")
    only_info = MenuNavigator("xyzzy", {})
    for _ in range(2):
        act = only_info.on_prompt("for branch hours press 3 for our locations press 4", 1.0)
    assert (act.kind, act.digits) == ("dtmf", "0")
