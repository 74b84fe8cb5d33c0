"""parse_menu and the prompt recognisers: tables of clean and STT-garbled transcripts."""

import pytest

from worker.menu import (
    MenuOption,
    asks_for_account,
    asks_open_question,
    callback_option,
    is_hold_message,
    menu_signature,
    normalize,
    parse_menu,
)


def pairs(text: str) -> list[tuple[str, str]]:
    return [(o.digits, o.label) for o in parse_menu(text)]


MENUS = [
    # label before the key, punctuated (Whisper style)
    (
        "For billing, press two. For technical support, press three. "
        "To speak to a representative, press zero.",
        [("2", "billing"), ("3", "technical support"), ("0", "speak to a representative")],
    ),
    # the same without punctuation, "two" heard as "to" (pocketsphinx style)
    (
        "for billing press to for technical support press three to speak to a representative press zero",
        [("2", "billing"), ("3", "technical support"), ("0", "speak to a representative")],
    ),
    # label after the key
    (
        "press one for billing press two for technical support press zero to speak to an operator",
        [("1", "billing"), ("2", "technical support"), ("0", "speak to an operator")],
    ),
    # a greeting before the menu is not part of the first label
    (
        "thank you for calling acme please listen carefully as our menu options have changed "
        "for billing press 2 for support press 3",
        [("2", "billing"), ("3", "support")],
    ),
    # both styles in one unpunctuated sentence, "pound"
    (
        "press 1 for billing press 2 for sales for all other questions press pound",
        [("1", "billing"), ("2", "sales"), ("#", "all other questions")],
    ),
    (
        "Press 1 for billing. Press 2 for sales. For all other questions, press pound.",
        [("1", "billing"), ("2", "sales"), ("#", "all other questions")],
    ),
    ("for billing press 2 press 0 for an operator", [("2", "billing"), ("0", "an operator")]),
    (
        "press 0 to speak to a representative press 1 for billing",
        [("0", "speak to a representative"), ("1", "billing")],
    ),
    (
        "press 1 for questions for your bill press 2 for sales",
        [("1", "questions for your bill"), ("2", "sales")],
    ),
    # "for" heard for "four"; "star" and "the ... key"
    ("press for for orders press 5 for returns", [("4", "orders"), ("5", "returns")]),
    ("to hear these options again press the star key", [("*", "hear these options again")]),
    ("dial 9 for the company directory", [("9", "the company directory")]),
    ("if you are a new customer press too", [("2", "are a new customer")]),
    # no menu at all
    ("please hold while we try to get here", []),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), MENUS)
def test_parse_menu_table(text: str, expected: list[tuple[str, str]]) -> None:
    assert pairs(text) == expected


def test_spoken_options_merge_with_keys() -> None:
    opts = parse_menu("For billing, say billing or press two. For sales, say sales.")
    assert opts == [MenuOption("2", "billing", "billing"), MenuOption("", "sales", "sales")]
    assert parse_menu("press 2 or say billing for billing questions") == [
        MenuOption("2", "billing questions", "billing")
    ]


def test_repeated_key_keeps_first_label() -> None:
    assert pairs("press 1 for billing press 2 for sales. press 1 for bill pay") == [
        ("1", "billing"),
        ("2", "sales"),
    ]


def test_garbled_asterisk_voicemail_menu_still_yields_keys() -> None:
    # what pocketsphinx heard for vm-options.wav ("press 1 to record your unavailable message, press 2 ...")
    heard = (
        "press one to recall it you're at the local men and fred keeley to record your dad he meant a "
        "press to read you record your name press bullard to record your temporary greeting"
    )
    keys = [o.digits for o in parse_menu(heard)]
    assert keys[:2] == ["1", "2"]
    assert "record" in parse_menu(heard)[1].label


@pytest.mark.parametrize(
    ("text", "hold"),
    [
        ("Please hold. Your call is important to us.", True),
        ("all of our representatives are currently assisting other customers", True),
        ("your estimated wait time is five minutes", True),
        ("please hold while we try to get here", True),
        ("for billing press two", False),
        ("hold on to your receipt and press one", False),
    ],
)
def test_hold_messages(text: str, hold: bool) -> None:
    assert is_hold_message(text) is hold


def test_callback_offer_is_recognised() -> None:
    opts = parse_menu(
        "if you would like us to call you back when an agent is available press 1 otherwise stay on the line"
    )
    offer = callback_option(opts)
    assert offer is not None and offer.digits == "1"
    assert callback_option(parse_menu("press 1 for billing")) is None


def test_account_and_open_questions() -> None:
    assert asks_for_account("Please enter your account number followed by the pound key")
    assert not asks_for_account("for billing press two")
    assert asks_open_question("In a few words, tell me why you're calling.")
    assert not asks_open_question("press 1 for sales")


def test_signature_ignores_label_noise() -> None:
    a = parse_menu("for billing press 2 for support press 3")
    b = parse_menu("for belling press two for sport press three")
    assert menu_signature(a) == menu_signature(b) == frozenset({"2", "3"})


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="transcript must be a string"):
        normalize(None)  # type: ignore[arg-type]
