"""Understanding IVR prompts from a transcript (pure: no I/O, no clocks, no logging).

`parse_menu("For billing, press two. Press 0 for an operator.")` gives
`[MenuOption("2", "billing"), MenuOption("0", "an operator")]`.  Transcripts come
from speech recognition, so the parser expects its mistakes: number words
("two", and "to"/"too" or "for"/"fore" right after "press"), "pound"/"hash",
"star", no punctuation at all (pocketsphinx), or full punctuation (Whisper).

Both menu styles are read: "for X, press D" (label before the key) and
"press D for X" (label after).  Within one sentence the style that explains
more options wins; an option left without a label then takes the unused text
on its other side.  "For billing, say billing" gives a spoken option
(`digits=""`, `say="billing"`); "press 2 or say billing" merges into one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that introduce a key: "press 2", "dial 0", "push star".
KEY_VERBS = frozenset(
    {"press", "pressed", "presses", "pres", "dial", "dialed", "push", "hit", "select", "enter"}
)
# Words that introduce a spoken answer: "say billing".
SAY_VERBS = frozenset({"say", "says"})
# Words that start a label: "for billing", "to speak to an agent", "if you are a new customer".
CONNECTORS = frozenset({"for", "to", "if"})
# Leading/trailing words stripped from labels.
FILLERS = frozenset(
    {"please", "or", "and", "now", "just", "simply", "then", "otherwise", "also", "you", "can"}
)
# Verbs after "to" that start a new label inside a span ("... | to pay your bill").
TO_VERBS = frozenset(
    {
        "speak",
        "talk",
        "hear",
        "pay",
        "check",
        "make",
        "report",
        "cancel",
        "order",
        "repeat",
        "return",
        "reach",
        "record",
        "change",
        "reset",
        "activate",
        "schedule",
        "update",
        "open",
        "close",
        "file",
        "leave",
        "request",
    }
)
MISHEARD_FOR = frozenset({"or", "four", "fore", "far", "from"})  # "for" at a sentence start, misheard
MAX_LABEL_WORDS = 10  # a label is the last (before) / first (after) this many words of its span
MAX_SAY_WORDS = 3  # "say customer service" at most this many words

# Spoken key names, including the usual recognition errors.  Ambiguous words
# ("to", "for", "oh", "ate") count only right after a key verb.
KEY_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "owe": "0",
    "one": "1",
    "won": "1",
    "two": "2",
    "to": "2",
    "too": "2",
    "three": "3",
    "tree": "3",
    "four": "4",
    "for": "4",
    "fore": "4",
    "five": "5",
    "six": "6",
    "sex": "6",
    "seven": "7",
    "eight": "8",
    "ate": "8",
    "nine": "9",
    "star": "*",
    "asterisk": "*",
    "*": "*",
    "pound": "#",
    "hash": "#",
    "hashtag": "#",
    "#": "#",
    "pounds": "#",
}
_KEY_FILLERS = frozenset({"the", "a", "key", "button", "number"})  # "press the star key"

HOLD_PHRASES = (
    "please hold",
    "please continue to hold",
    "your call is important",
    "your call is very important",
    "all of our representatives are",
    "all of our agents are",
    "all our agents are",
    "all representatives are",
    "remain on the line",
    "stay on the line",
    "estimated wait time",
    "calls will be answered in the order",
    "call will be answered in the order",
    "next available",
    "currently assisting other",
    "thank you for holding",
    "thank you for your patience",
    "thank you for waiting",
    "hold while",
    "hold for the next",
)
CALLBACK_WORDS = (
    "call back",
    "callback",
    "call you back",
    "return your call",
    "keep your place",
    "hold your place",
)
ACCOUNT_PHRASES = (
    "account number",
    "enter your account",
    "say or enter your account",
    "member number",
    "customer number",
    "policy number",
)
OPEN_QUESTION_PHRASES = (
    "in a few words",
    "briefly tell me",
    "briefly describe",
    "tell me why you're calling",
    "tell me why you are calling",
    "how can i help",
    "how may i help",
    "what can i help you with",
    "reason for your call",
    "what are you calling about",
)

_TOKEN = re.compile(r"[a-z0-9']+|[#*]")
_SENTENCE = re.compile(r"[.!?;\n]+")


@dataclass(frozen=True)
class MenuOption:
    """One choice a menu offers: the key to press ("" if speech only) and what it is for."""

    digits: str
    label: str
    say: str = ""  # the phrase to speak when the menu accepts speech ("billing")

    @property
    def is_callback(self) -> bool:
        return any(w in self.label for w in CALLBACK_WORDS)


def normalize(text: str) -> str:
    """Lower-case words separated by single spaces; '#' and '*' kept, other punctuation dropped."""
    if not isinstance(text, str):
        raise TypeError(f"transcript must be a string, got {type(text).__name__}")
    return " ".join(_TOKEN.findall(text.lower().replace("-", " ")))


def tokens(text: str) -> list[str]:
    return normalize(text).split()


@dataclass
class _Trigger:
    start: int  # index of the verb
    end: int  # index after the key / phrase
    digits: str
    say: str


def _read_key(words: list[str], i: int) -> tuple[str, int] | None:
    """The key after a key verb at words[i-1]: (digits, index after it) or None."""
    j = i
    while j < len(words) and j < i + 2 and words[j] in _KEY_FILLERS and words[j] != "number":
        j += 1
    if j >= len(words):
        return None
    w = words[j]
    if w.isdigit() and len(w) <= 2:
        return w, j + 1
    if w in KEY_WORDS:
        digits = KEY_WORDS[w]
        k = j + 1
        # "number sign" / "pound sign" / "star key"
        while k < len(words) and words[k] in {"sign", "key", "button"}:
            k += 1
        return digits, k
    return None


def _triggers(words: list[str]) -> list[_Trigger]:
    found: list[_Trigger] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in KEY_VERBS:
            key = _read_key(words, i + 1)
            if key is not None:
                found.append(_Trigger(i, key[1], key[0], ""))
                i = key[1]
                continue
        elif w in SAY_VERBS and i + 1 < len(words):
            j = i + 1
            phrase: list[str] = []
            while j < len(words) and len(phrase) < MAX_SAY_WORDS:
                if (
                    words[j] in KEY_VERBS
                    or words[j] in SAY_VERBS
                    or words[j] in CONNECTORS
                    or words[j] == "or"
                ):
                    break
                phrase.append(words[j])
                j += 1
            if phrase:
                found.append(_Trigger(i, j, "", " ".join(phrase)))
                i = j
                continue
        i += 1
    return found


def _strip(words: list[str]) -> list[str]:
    a, b = 0, len(words)
    while a < b and words[a] in FILLERS:
        a += 1
    while b > a and words[b - 1] in FILLERS:
        b -= 1
    return words[a:b]


def _label_before(span: list[str]) -> str:
    """'thank you for calling acme for billing' -> 'billing'; 'to speak to a rep' -> 'speak to a rep'."""
    span = _strip(span)
    if not span:
        return ""
    cut = -1
    for k in range(len(span) - 1, -1, -1):
        if span[k] in {"for", "if"}:
            cut = k
            break
    if cut < 0 and "to" in span:
        cut = span.index("to")
    part = span[cut + 1 :] if cut >= 0 else span
    return " ".join(_strip(part)[-MAX_LABEL_WORDS:])


def _label_after(span: list[str]) -> str:
    """'for billing questions' -> 'billing questions'; 'to speak to an agent' -> 'speak to an agent'."""
    span = _strip(span)
    if span and span[0] in CONNECTORS:
        span = span[1:]
    return " ".join(_strip(span)[:MAX_LABEL_WORDS])


def _starts_label(span: list[str]) -> bool:
    s = _strip(span)
    return bool(s) and s[0] in CONNECTORS and len(s) > 1


def _has_label(span: list[str]) -> bool:
    s = _strip(span)
    return any(w in CONNECTORS for w in s) and len(s) > 1


def _split_point(span: list[str]) -> int:
    """Where a span holds the end of one label and the start of the next ("for sales | for all other
    questions"), the index of the second connector; -1 when there is none."""
    s = span
    for p in range(len(s) - 1, 0, -1):
        w = s[p]
        if w in {"for", "if"} or (
            w == "to" and p + 1 < len(s) and s[p + 1] in TO_VERBS and s[p - 1] not in TO_VERBS
        ):
            if _strip(s[:p]) and _strip(s[p + 1 :]):
                return p
    return -1


def _parse_sentence(words: list[str]) -> list[MenuOption]:
    trig = _triggers(words)
    if not trig:
        return []
    n = len(trig)
    spans = [words[trig[k].end : (trig[k + 1].start if k + 1 < n else len(words))] for k in range(n)]
    lead = words[: trig[0].start]
    if lead and lead[0] in MISHEARD_FOR and len(lead) > 1:  # "or billing press two": a clipped "for"
        lead = ["for", *lead[1:]]
    labels = [""] * n
    if _has_label(lead) or (trig[0].say and _strip(lead)):
        labels[0] = _label_before(lead)
    for k in range(n):
        span = spans[k]
        if not _strip(span):
            continue
        if k == n - 1:
            if not labels[k]:
                labels[k] = _label_after(span)
            continue
        if labels[k]:
            labels[k + 1] = _label_before(span)  # "for billing press 2 | for support press 3"
            continue
        p = _split_point(span)
        if p > 0 and not _starts_label(spans[k + 1]):
            labels[k], labels[k + 1] = _label_after(span[:p]), _label_before(span[p:])
        else:
            labels[k] = _label_after(span)  # "press 1 | for billing press 2 ..."
    out: list[MenuOption] = []
    for k, t in enumerate(trig):
        label = labels[k] or t.say
        before = words[(trig[k - 1].end if k else 0) : t.start]
        if t.say and not t.digits and out and _strip(before) == [] and (out[-1].digits and not out[-1].say):
            out[-1] = MenuOption(out[-1].digits, out[-1].label or label, t.say)  # "press 2 or say billing"
            continue
        if t.digits and out and not out[-1].digits and not _strip(before):
            out[-1] = MenuOption(t.digits, out[-1].label or label, out[-1].say)  # "say billing or press 2"
            continue
        out.append(MenuOption(t.digits, label, t.say))
    return out


def parse_menu(transcript: str) -> list[MenuOption]:
    """The options a menu prompt offers, in the order heard; the first label wins for a repeated key."""
    options: list[MenuOption] = []
    seen: set[str] = set()
    for sentence in _SENTENCE.split(
        transcript.lower() if isinstance(transcript, str) else normalize(transcript)
    ):
        for opt in _parse_sentence(tokens(sentence)):
            key = opt.digits or f"say:{opt.say}"
            if key in seen:
                if opt.say:  # "press 2 ... or say billing" in two sentences
                    options = [
                        MenuOption(o.digits, o.label, o.say or opt.say)
                        if (o.digits or f"say:{o.say}") == key
                        else o
                        for o in options
                    ]
                continue
            seen.add(key)
            options.append(opt)
    return options


def _contains(text: str, phrases: tuple[str, ...]) -> bool:
    t = f" {normalize(text)} "
    return any(f" {normalize(p)} " in t for p in phrases)


def is_hold_message(transcript: str) -> bool:
    """ "Please hold", "your call is important to us", "all of our agents are busy" ..."""
    return _contains(transcript, HOLD_PHRASES)


def asks_for_account(transcript: str) -> bool:
    """The prompt wants an account (or member, policy) number."""
    return _contains(transcript, ACCOUNT_PHRASES)


def asks_open_question(transcript: str) -> bool:
    """A speech-driven IVR: "in a few words, tell me why you're calling"."""
    return _contains(transcript, OPEN_QUESTION_PHRASES)


def callback_option(options: list[MenuOption]) -> MenuOption | None:
    """The option offering a callback instead of holding ("press 1 to receive a call back"), if any."""
    return next((o for o in options if o.is_callback), None)


def menu_signature(options: list[MenuOption]) -> frozenset[str]:
    """What identifies a menu across repeats despite recognition noise: its set of keys/phrases."""
    return frozenset(o.digits or f"say:{o.say}" for o in options)
