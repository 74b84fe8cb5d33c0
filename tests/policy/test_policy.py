"""Dialling policy: table-driven, pure."""

from __future__ import annotations

import pytest

from worker import errors
from worker.policy import EMERGENCY_NUMBERS, PREMIUM_PREFIXES, normalize, validate_destination

US = ("1",)

ACCEPTED = [
    ("+15550100100", US, "+15550100100"),
    ("+1 (555) 010-0100", US, "+15550100100"),
    ("1-555-010-0100", US, "+15550100100"),
    ("15550100100", US, "+15550100100"),
    ("+1.555.010.0100", US, "+15550100100"),
    ("  +1 800 555 0199 ", US, "+18005550199"),          # toll-free is a normal company number
    ("+44 20 7946 0000", ("1", "44"), "+442079460000"),
    ("+442079460000", ("+44",), "+442079460000"),         # "+44" in settings is tolerated
    ("+33 1 40 00 00 00", ("33",), "+33140000000"),
    ("+1 876 555 0100", ("1", "1876"), "+18765550100"),     # Jamaica, explicitly allowed
    ("+1 787 555 0100", US, "+17875550100"),                # Puerto Rico is domestic
]


@pytest.mark.parametrize(("number", "allowed", "expected"), ACCEPTED)
def test_accepted(number: str, allowed: tuple[str, ...], expected: str) -> None:
    assert validate_destination(number, allowed) == expected


REFUSED = [
    # emergency, in any form
    ("911", US, errors.EmergencyNumber),
    ("9-1-1", US, errors.EmergencyNumber),
    ("+1911", US, errors.EmergencyNumber),
    ("+1 911", US, errors.EmergencyNumber),
    ("1911", US, errors.EmergencyNumber),
    ("9911", US, errors.EmergencyNumber),
    ("(911)", US, errors.EmergencyNumber),
    ("+1 (911) 555-0100", US, errors.EmergencyNumber),
    ("112", US, errors.EmergencyNumber),
    ("+44 999", ("44",), errors.EmergencyNumber),
    ("999", US, errors.EmergencyNumber),
    ("000", US, errors.EmergencyNumber),
    ("+61000", ("61",), errors.EmergencyNumber),
    ("110", US, errors.EmergencyNumber),
    ("119", US, errors.EmergencyNumber),
    ("118", US, errors.EmergencyNumber),
    ("08", US, errors.EmergencyNumber),
    ("+91 100", ("91",), errors.EmergencyNumber),
    ("101", US, errors.EmergencyNumber),
    ("102", US, errors.EmergencyNumber),
    ("103", US, errors.EmergencyNumber),
    ("0112", US, errors.EmergencyNumber),
    # premium-rate / revenue share / satellite
    ("+1 900 555 0100", US, errors.PremiumRateNumber),
    ("1-900-555-0100", US, errors.PremiumRateNumber),
    ("+1 976 555 0100", US, errors.PremiumRateNumber),
    ("+44 909 879 0000", ("44",), errors.PremiumRateNumber),
    ("+44 871 000 0000", ("44",), errors.PremiumRateNumber),
    ("+44 70 0000 0000", ("44",), errors.PremiumRateNumber),
    ("+881 6 1234 5678", ("881",), errors.PremiumRateNumber),
    ("+882 16 1234 5678", US, errors.PremiumRateNumber),
    ("+883 510 000 0000", US, errors.PremiumRateNumber),
    ("+979 1234 5678", US, errors.PremiumRateNumber),
    ("+49 900 1234567", ("49",), errors.PremiumRateNumber),
    # outside the allowed countries (toll fraud)
    ("+44 20 7946 0000", US, errors.DestinationNotAllowed),
    ("+15550100100", ("44",), errors.DestinationNotAllowed),
    ("+15550100100", (), errors.DestinationNotAllowed),
    ("+1 876 555 0100", US, errors.DestinationNotAllowed),      # NANP, but international rates
    ("1-809-555-0100", US, errors.DestinationNotAllowed),
    ("+1 876 555 0100", ("1", "1809"), errors.DestinationNotAllowed),
    # NANP service codes
    ("+1 411 555 0100", US, errors.InvalidNumber),
    ("+1 211 555 0100", US, errors.InvalidNumber),
    ("411", US, errors.InvalidNumber),
    ("1-311", US, errors.InvalidNumber),
    # malformed
    ("", US, errors.InvalidNumber),
    ("   ", US, errors.InvalidNumber),
    ("5550100100", US, errors.InvalidNumber),            # no country code: refused, with a hint
    ("555-0100", US, errors.InvalidNumber),
    ("+1 555 010 010", US, errors.InvalidNumber),        # 9 digits after the 1
    ("+1 555 010 01000", US, errors.InvalidNumber),
    ("+1 055 010 0100", US, errors.InvalidNumber),       # NPA starts with 0
    ("call +15550100100", US, errors.InvalidNumber),
    ("+1555010010x12", US, errors.InvalidNumber),
    ("+1555*0100100", US, errors.InvalidNumber),
    ("#15550100100", US, errors.InvalidNumber),
    ("++15550100100", US, errors.InvalidNumber),
    ("011 44 20 7946 0000", ("44",), errors.InvalidNumber),
    ("00442079460000", ("44",), errors.InvalidNumber),
    ("+0442079460000", ("44",), errors.InvalidNumber),
    ("+1234567890123456", US, errors.InvalidNumber),     # 16 digits
    ("+" + "1" * 60, US, errors.InvalidNumber),
    ("+１５５５０１００１００", US, errors.InvalidNumber),  # full-width digits
]


@pytest.mark.parametrize(("number", "allowed", "error"), REFUSED)
def test_refused(number: str, allowed: tuple[str, ...], error: type[errors.ValidationError]) -> None:
    with pytest.raises(error) as info:
        validate_destination(number, allowed)
    exc = info.value
    assert type(exc) is error
    assert exc.status == 400
    assert str(exc)                              # a clear message, never empty
    assert exc.code == error.code


def test_error_messages_are_helpful() -> None:
    with pytest.raises(errors.InvalidNumber, match="service code"):
        validate_destination("411", US)
    with pytest.raises(errors.InvalidNumber, match=r"\+15550100100"):
        validate_destination("5550100100", US)
    with pytest.raises(errors.EmergencyNumber, match="emergency"):
        validate_destination("+1 911", US)
    with pytest.raises(errors.DestinationNotAllowed, match=r"\+1"):
        validate_destination("+442079460000", US)


@pytest.mark.parametrize("code", sorted(EMERGENCY_NUMBERS))
def test_every_emergency_code_is_refused_bare_and_with_country_code(code: str) -> None:
    for form in (code, "+1" + code, "9" + code, "+44 " + code, "-".join(code)):
        with pytest.raises(errors.EmergencyNumber):
            validate_destination(form, ("1", "44"))


@pytest.mark.parametrize("prefix", sorted(PREMIUM_PREFIXES))
def test_every_premium_prefix_is_refused(prefix: str) -> None:
    number = "+" + prefix + ("5550100" if prefix.startswith("1") else "5" * (12 - len(prefix)))
    with pytest.raises(errors.PremiumRateNumber):
        validate_destination(number, (prefix[:1], prefix[:2], prefix[:3]))


@pytest.mark.parametrize("bad", [None, 15550100100, b"+15550100100", ["+15550100100"]])
def test_non_strings_are_invalid(bad: object) -> None:
    with pytest.raises(errors.InvalidNumber, match="string"):
        validate_destination(bad, US)  # type: ignore[arg-type]


def test_normalize_does_not_apply_policy() -> None:
    assert normalize("+1 900 555 0100") == "+19005550100"
