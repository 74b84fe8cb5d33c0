"""Dialling policy: which numbers Hold Slayer may dial (pure: no I/O, no clocks).

`validate_destination(number, allowed_country_codes)` is the one gate every
launch goes through (web form, REST API, jobs enqueued by other apps, desk-phone
star codes).  It returns the E.164 string (``+15550100100``) or raises:

- `InvalidNumber`          not a dialable international number (with a hint),
- `EmergencyNumber`        an emergency service in any form (bare, ``+1 911``, ``9-911``),
- `PremiumRateNumber`      premium-rate / revenue-share / satellite ranges (toll fraud),
- `DestinationNotAllowed`  a country outside `Settings.allowed_country_codes` (toll fraud), including
                           +1 Caribbean area codes billed internationally unless "1NPA" is listed,

Accepted input: a leading ``+`` and digits, or a full NANP ``1XXXXXXXXXX``;
spaces, dashes, dots and parentheses are ignored.  Anything else (letters,
``*``, ``#``, extensions, bare 10-digit national numbers) is refused with a
message that says what to send instead.  A robot must never guess where an
ambiguous number goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from worker.errors import DestinationNotAllowed, EmergencyNumber, InvalidNumber, PremiumRateNumber

MAX_INPUT_CHARS = 40          # longer input is refused before any parsing
E164_MIN_DIGITS = 7           # shortest E.164 numbers in use (e.g. +683 xxxx, Niue) incl. country code
E164_MAX_DIGITS = 15          # ITU-T E.164 maximum, country code included
NANP_DIGITS = 11              # 1 + NPA (3) + NXX (3) + line (4)

# Emergency and emergency-adjacent short codes, refused however they are written.
# Matching is exact on short candidate strings (the whole number, the number
# without a country code, without an outside-line prefix 9/0), so it can never
# hit a full-length subscriber number.  Sources: ITU-T E.161.1, national plans.
EMERGENCY_NUMBERS: dict[str, str] = {
    "911": "NANP and many others (police, fire, ambulance)",
    "9911": "911 behind a PBX outside-line prefix 9",
    "933": "NANP 911 address-verification test line",
    "112": "EU / GSM universal emergency",
    "999": "UK, Ireland, Hong Kong, Singapore, Malaysia, Poland",
    "000": "Australia",
    "111": "New Zealand",
    "110": "Germany, Japan, China (police)",
    "119": "Japan, Korea, China (fire / ambulance)",
    "118": "Italy (medical), Switzerland (fire)",
    "08": "legacy emergency short code (listed in the house brief)",
    "100": "India, Greece, Belgium, Israel (police / fire)",
    "101": "India, Russia, Belgium, Israel",
    "102": "India, Russia, Israel",
    "103": "Russia (ambulance)",
    "15": "France (SAMU)",
    "17": "France (police)",
    "18": "France (fire)",
    "113": "Italy, Norway (police)",
    "115": "Italy (fire)",
    "117": "Switzerland (police)",
    "122": "Austria (fire), Egypt (police)",
    "123": "Egypt, Colombia (ambulance)",
    "133": "Austria (police)",
    "144": "Austria, Switzerland (ambulance)",
    "190": "Brazil (police)",
    "192": "Brazil (ambulance)",
    "193": "Brazil (fire)",
    "995": "Singapore (ambulance / fire)",
    "997": "Poland (police)",
    "998": "Poland (fire)",
    "10111": "South Africa (police)",
    "10177": "South Africa (ambulance)",
}

# Premium-rate, revenue-share and satellite ranges: E.164 digit prefixes
# (country code included).  Each is a known international revenue-share fraud
# (IRSF) target or a number that bills the caller per minute.
PREMIUM_PREFIXES: dict[str, str] = {
    "1900": "NANP 900 premium-rate",
    "1976": "NANP 976 pay-per-call",
    "449": "UK 09 premium-rate",
    "4487": "UK 087 revenue-share",
    "4470": "UK 070 personal numbering (fraud-prone)",
    "870": "Inmarsat SNAC satellite",
    "878": "Universal Personal Telecommunications",
    "881": "Global Mobile Satellite System (Iridium, Globalstar, ...)",
    "882": "International Networks (IRSF favourite)",
    "883": "International Networks",
    "888": "OCHA telecommunications for disaster relief",
    "979": "International Premium Rate Service (ITU)",
    "991": "ITPCS trial service",
    "49900": "Germany 0900 premium-rate",
    "49137": "Germany 0137 mass-calling / televoting",
    "3389": "France 089 premium-rate",
    "3990": "Italy 0899 premium-rate (historic 89x)",
    "3989": "Italy 89x premium-rate",
    "34803": "Spain 803 premium-rate",
    "34806": "Spain 806 premium-rate",
    "34807": "Spain 807 premium-rate",
    "34905": "Spain 905 mass-calling",
    "31900": "Netherlands 0900 premium-rate",
    "31906": "Netherlands 0906 premium-rate",
    "31909": "Netherlands 0909 premium-rate",
    "61190": "Australia 190 premium-rate",
    "81990": "Japan 0990 Dial Q2",
}

# NANP N11 service codes (other than 911, which is an emergency number).
NANP_SERVICE_CODES: dict[str, str] = {
    "211": "community information and referral",
    "311": "municipal services",
    "411": "directory assistance (billed)",
    "511": "traffic information",
    "611": "carrier repair service",
    "711": "telecommunications relay service",
    "811": "call before you dig",
}

# NANP area codes outside the US and Canada: dialled as +1 but billed at international rates, and
# the classic "one ring" / IRSF targets.  Refused unless listed as "1NPA" in allowed_country_codes
# (ALLOWED_COUNTRY_CODES=1,1876 allows Jamaica).
NANP_INTERNATIONAL_NPAS: dict[str, str] = {
    "242": "Bahamas", "246": "Barbados", "264": "Anguilla", "268": "Antigua and Barbuda",
    "284": "British Virgin Islands", "345": "Cayman Islands", "441": "Bermuda", "473": "Grenada",
    "649": "Turks and Caicos", "658": "Jamaica", "876": "Jamaica", "664": "Montserrat",
    "721": "Sint Maarten", "758": "Saint Lucia", "767": "Dominica", "784": "Saint Vincent",
    "809": "Dominican Republic", "829": "Dominican Republic", "849": "Dominican Republic",
    "868": "Trinidad and Tobago", "869": "Saint Kitts and Nevis",
}

_SEPARATORS = re.compile(r"[\s\-().\u00a0]")
_ALLOWED_CHARS = re.compile(r"^\+?[0-9]+$")


def _digits_only(number: str) -> tuple[bool, str]:
    """(had_plus, digits) after removing separators; raises InvalidNumber on stray characters."""
    compact = _SEPARATORS.sub("", number)
    if not compact:
        raise InvalidNumber("the number is empty")
    if not _ALLOWED_CHARS.match(compact):
        raise InvalidNumber(
            f"{number!r} contains characters other than digits, '+', spaces, dashes, dots and "
            "parentheses; send an E.164 number such as +15550100100"
        )
    if compact.startswith("+"):
        return True, compact[1:]
    return False, compact


def _emergency_candidates(had_plus: bool, digits: str) -> set[str]:
    """Short strings the number could mean when dialled: bare, minus country code, minus 9/0 prefix."""
    out = {digits}
    if had_plus:
        out.update(digits[n:] for n in (1, 2, 3) if len(digits) > n)   # country codes are 1-3 digits
    else:
        if digits[:1] == "1" and len(digits) > 1:                      # NANP "1" + short code
            out.add(digits[1:])
        if digits[:1] in ("9", "0") and len(digits) > 1:               # PBX outside-line prefix
            out.add(digits[1:])
    return out


def emergency_service(number: str) -> str | None:
    """The emergency table entry the number dials, or None.  Tolerates any punctuation."""
    try:
        had_plus, digits = _digits_only(number)
    except InvalidNumber:
        return None
    for c in _emergency_candidates(had_plus, digits):
        if c in EMERGENCY_NUMBERS:
            return c
    return None


def normalize(number: str) -> str:
    """E.164 string for `number`, or InvalidNumber.  Does not apply the dialling policy."""
    if not isinstance(number, str):
        raise InvalidNumber(f"the number must be a string, got {type(number).__name__}")
    if len(number) > MAX_INPUT_CHARS:
        raise InvalidNumber(f"the number is longer than {MAX_INPUT_CHARS} characters")
    had_plus, digits = _digits_only(number.strip())
    if not had_plus:
        if len(digits) == NANP_DIGITS and digits.startswith("1"):
            pass                                  # full NANP number without '+': unambiguous
        elif digits.startswith("00") or digits.startswith("011"):
            raise InvalidNumber(
                f"{number!r} uses an international dialling prefix; write it as '+' and the country code"
            )
        elif len(digits) == 10:
            raise InvalidNumber(
                f"{number!r} has no country code; for a US/Canada number send +1{digits}"
            )
        else:
            raise InvalidNumber(
                f"{number!r} is not an international number; send '+', the country code and the number"
            )
    if digits.startswith("0"):
        raise InvalidNumber(f"{number!r}: country codes never start with 0")
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS:
        raise InvalidNumber(
            f"{number!r} has {len(digits)} digits; E.164 numbers have {E164_MIN_DIGITS} to "
            f"{E164_MAX_DIGITS} digits including the country code"
        )
    if digits.startswith("1"):
        _check_nanp(number, digits)
    return "+" + digits


def _check_nanp(number: str, digits: str) -> None:
    if len(digits) != NANP_DIGITS:
        raise InvalidNumber(
            f"{number!r}: US/Canada (+1) numbers have 10 digits after the 1, got {len(digits) - 1}"
        )
    npa = digits[1:4]
    if npa[0] in "01":
        raise InvalidNumber(f"{number!r}: NANP area codes start with 2-9, got {npa}")


def country_code_of(e164: str, allowed_country_codes: Iterable[str]) -> str | None:
    """The allowed country code `e164` starts with (country codes are prefix-free), or None."""
    digits = e164.lstrip("+")
    for cc in sorted((c.strip().lstrip("+") for c in allowed_country_codes), key=len, reverse=True):
        if cc and digits.startswith(cc):
            return cc
    return None


def validate_destination(number: str, allowed_country_codes: Iterable[str]) -> str:
    """E.164 `number` if Hold Slayer may dial it, else one of the policy errors (see module doc)."""
    if isinstance(number, str):
        service = emergency_service(number)
        if service is not None:
            raise EmergencyNumber(
                f"{number!r} is an emergency number ({EMERGENCY_NUMBERS[service]}); "
                "Hold Slayer never dials emergency services: call them yourself"
            )
        compact = _SEPARATORS.sub("", number).lstrip("+")
        code = compact[1:] if len(compact) == 4 and compact.startswith("1") else compact
        if code in NANP_SERVICE_CODES:
            raise InvalidNumber(
                f"{number!r} is a NANP service code ({NANP_SERVICE_CODES[code]}), not a company"
            )
    e164 = normalize(number)
    digits = e164[1:]
    if digits.startswith("1"):
        npa = digits[1:4]
        if npa == "911":
            raise EmergencyNumber(f"{number!r} starts with 911 after the 1; refused as an emergency number")
        if npa in NANP_SERVICE_CODES:
            raise InvalidNumber(f"{number!r}: {npa} is a NANP service code ({NANP_SERVICE_CODES[npa]})")
    for prefix in sorted(PREMIUM_PREFIXES, key=len, reverse=True):
        if digits.startswith(prefix):
            raise PremiumRateNumber(
                f"{e164} is in a premium-rate or revenue-share range ({PREMIUM_PREFIXES[prefix]}); refused"
            )
    allowed = tuple(c.strip().lstrip("+") for c in allowed_country_codes)
    if digits.startswith("1") and digits[1:4] in NANP_INTERNATIONAL_NPAS and digits[:4] not in allowed:
        raise DestinationNotAllowed(
            f"{e164} is in {NANP_INTERNATIONAL_NPAS[digits[1:4]]} (+1 {digits[1:4]}, international rates); "
            f"add 1{digits[1:4]} to ALLOWED_COUNTRY_CODES to dial it"
        )
    if country_code_of(e164, allowed) is None:
        shown = ", ".join("+" + c.lstrip("+") for c in allowed) or "none"
        raise DestinationNotAllowed(
            f"{e164} is outside the allowed country codes ({shown}); set ALLOWED_COUNTRY_CODES to dial it"
        )
    return e164
