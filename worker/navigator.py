"""Getting through the phone tree: stored call flows and flow-less navigation (pure cores).

Two drivers hand the job one `Action` at a time and take back what it heard;
neither touches sockets, clocks or logs.

    runner = FlowRunner(steps, options)            # a stored call flow
    for action in runner:                          # dtmf / listen / wait / speak / hold / transfer / end
        result = execute(action)                   # listen -> the transcript; hold -> "human" | "timeout"
        runner.feed(result)

    nav = MenuNavigator(intent, options, chooser)  # no flow: understand the menu
    action = nav.on_prompt(transcript, t)          # after each prompt (speech then silence)

An Action with a non-empty `status` is the last one: the job executes it, then
the navigation is over with that status (`done`, `callback_accepted`,
`navigation_loop`, `navigation_failed`, `no_human`).

LISTEN with `expect` (documented rule): when none of the expected keywords is
heard, listen once more (the prompt may not have started); when still missing
and the step before was a DTMF, send that DTMF again and listen once more (the
IVR may have missed the tones); when still missing, end with
`navigation_failed` (the job may carry on with a MenuNavigator).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.errors import InvalidCallFlow
from worker.llm import (
    SPOKEN_ESCAPES,
    Choice,
    Chooser,
    KeywordChooser,
    is_person_option,
    is_staffed_option,
    validate_choice,
)
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
from worker.tts import spoken_digits

# Tunables.
DTMF_WAIT_AFTER_MS = 500  # default pause after a DTMF step, milliseconds
LISTEN_RETRIES = 1  # extra listens when `expect` is not heard
LOOP_ESCAPE_AT = 3  # the same menu heard this many times: ask for a person
LOOP_GIVE_UP_AT = 4  # ... and this many times: give up with `navigation_loop`
SAME_MENU_OVERLAP = 0.3  # label-word Jaccard above which two menus with the same keys are one menu
MAX_PROMPTS = 40  # prompts handled before giving up (a runaway IVR)

STEP_TYPES = ("dtmf", "listen", "wait", "hold", "speak", "transfer")
_DTMF = re.compile(r"^[0-9*#A-Da-dwW]{1,32}$")

# End statuses.
DONE = "done"
CALLBACK_ACCEPTED = "callback_accepted"
NAVIGATION_LOOP = "navigation_loop"
NAVIGATION_FAILED = "navigation_failed"
NO_HUMAN = "no_human"


@dataclass(frozen=True)
class Action:
    """One thing for the job to do on the company leg.

    kind: "dtmf" (digits, then wait wait_after_ms), "listen" (until the prompt ends or timeout_s; feed back
    the transcript), "wait" (timeout_s seconds of media), "speak" (text: synthesize and play it), "hold"
    (wait on hold for a human, at most timeout_s seconds, 0 = the call's limit; feed back "human" or
    "timeout"), "transfer" (ring device `to`, "" = the call's transfer_to, and bridge), "end".
    status: non-empty on the last action (see the module doc).
    """

    kind: str
    digits: str = ""
    text: str = ""
    timeout_s: float = 0.0
    wait_after_ms: int = 0
    to: str = ""
    status: str = ""
    reason: str = ""
    step: int = -1  # index of the call-flow step (FlowRunner), -1 otherwise
    secret: bool = False  # digits/text come from a request option: mask them in events and logs

    def to_event(self) -> dict[str, Any]:
        """The action as event data, secrets masked."""
        d: dict[str, Any] = {"action": self.kind}
        if self.digits:
            d["digits"] = "*" * len(self.digits) if self.secret else self.digits
        if self.text:
            d["text"] = "***" if self.secret else self.text
        for name in ("to", "status", "reason"):
            if getattr(self, name):
                d[name] = getattr(self, name)
        if self.step >= 0:
            d["step"] = self.step
        return d


def _option(options: Mapping[str, Any], key: str, step: int) -> str:
    if key not in options or options[key] in (None, ""):
        raise InvalidCallFlow(f"call flow step {step} uses option {key!r}, which the request does not have")
    return str(options[key])


def compile_step(raw: Mapping[str, Any], index: int, options: Mapping[str, Any]) -> Action:
    """A stored step (schemas/call_flow.json) as an Action; InvalidCallFlow with a clear message otherwise."""
    if not isinstance(raw, Mapping):
        raise InvalidCallFlow(f"call flow step {index} must be an object, got {type(raw).__name__}")
    kind = str(raw.get("type") or raw.get("action") or raw.get("kind") or "").strip().lower()
    if kind not in STEP_TYPES:
        raise InvalidCallFlow(
            f"call flow step {index} has unknown type {kind or None!r} (one of {STEP_TYPES})"
        )

    def number(name: str, default: float | None = None) -> float:
        value = raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidCallFlow(f"call flow step {index} ({kind}) needs {name} >= 0, got {value!r}")
        return float(value)

    if kind == "dtmf":
        secret = bool(raw.get("say"))
        digits = _option(options, str(raw["say"]), index) if secret else str(raw.get("digits") or "")
        if not _DTMF.match(digits):
            raise InvalidCallFlow(f"call flow step {index} (dtmf) has no valid digits (0-9 * # A-D w W)")
        return Action(
            "dtmf",
            digits=digits,
            wait_after_ms=int(number("wait_after_ms", DTMF_WAIT_AFTER_MS)),
            step=index,
            secret=secret,
        )
    if kind == "listen":
        expect = raw.get("expect") or []
        if not isinstance(expect, list) or not all(isinstance(e, str) and e.strip() for e in expect):
            raise InvalidCallFlow(f"call flow step {index} (listen): expect must be a list of keywords")
        return Action("listen", timeout_s=number("timeout_s"), step=index)
    if kind == "wait":
        return Action("wait", timeout_s=number("seconds"), step=index)
    if kind == "hold":
        return Action("hold", timeout_s=number("max_s", 0), step=index)
    if kind == "speak":
        if raw.get("say"):
            text = spoken_digits(_option(options, str(raw["say"]), index))
            return Action("speak", text=text, step=index, secret=True)
        text = str(raw.get("text") or "").strip()
        if not text:
            raise InvalidCallFlow(f"call flow step {index} (speak) needs text or say")
        return Action("speak", text=text, step=index)
    return Action("transfer", to=str(raw.get("to") or ""), step=index)


def heard(transcript: str, keywords: Sequence[str]) -> bool:
    """Whether any keyword (all its words, number words normalised) is in the transcript (pure)."""
    words = set(_digit_words(normalize(transcript or "")).split())
    for kw in keywords:
        need = _digit_words(normalize(kw)).split()
        if need and all(w in words for w in need):
            return True
    return False


_NUM = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "pound": "#",
    "hash": "#",
    "star": "*",
}


def _digit_words(text: str) -> str:
    return " ".join(_NUM.get(w, w) for w in text.split())


class FlowRunner:
    """Runs a stored call flow: an iterator of Actions with results fed back (pure)."""

    def __init__(self, steps: Sequence[Mapping[str, Any]], options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(steps, Sequence) or isinstance(steps, str | bytes) or not steps:
            raise InvalidCallFlow("a call flow needs a non-empty list of steps")
        self.options = dict(options or {})
        self.actions = [compile_step(s, i, self.options) for i, s in enumerate(steps)]
        self.expects = [
            list(s.get("expect") or []) if self.actions[i].kind == "listen" else []
            for i, s in enumerate(steps)
        ]
        self.transcripts: list[tuple[int, str]] = []  # (step, transcript) heard by LISTEN steps
        self._pending: list[Action] = []
        self._gen = self._run()
        self._result: Any = None
        self._started = False
        self.status = ""

    def __iter__(self) -> Iterator[Action]:
        return self

    def __next__(self) -> Action:
        if not self._started:
            self._started = True
            return next(self._gen)
        result, self._result = self._result, None
        return self._gen.send(result)

    def feed(self, result: Any) -> None:
        """The result of the last action: the transcript for listen, "human"/"timeout" for hold."""
        self._result = result

    def send(self, result: Any) -> Action:
        self.feed(result)
        return next(self)

    def _end(self, status: str, reason: str = "") -> Action:
        self.status = status
        return Action("end", status=status, reason=reason)

    def _run(self) -> Generator[Action, Any, None]:
        last_dtmf: Action | None = None
        for i, action in enumerate(self.actions):
            if action.kind == "listen":
                expect = self.expects[i]
                text = str((yield action) or "")
                self.transcripts.append((i, text))
                if expect and not heard(text, expect):
                    for _ in range(LISTEN_RETRIES):
                        text = str((yield action) or "")
                        self.transcripts.append((i, text))
                        if heard(text, expect):
                            break
                    if not heard(text, expect) and last_dtmf is not None:
                        yield last_dtmf
                        text = str((yield action) or "")
                        self.transcripts.append((i, text))
                    if not heard(text, expect):
                        yield self._end(
                            NAVIGATION_FAILED, f"step {i}: expected one of {expect}, heard {text[:120]!r}"
                        )
                        return
                continue
            result = yield action
            if action.kind == "dtmf":
                last_dtmf = action
            elif action.kind == "hold" and result == "timeout":
                yield self._end(NO_HUMAN, f"step {i}: no human within the hold limit")
                return
        yield self._end(DONE)


@dataclass
class MenuNavigator:
    """Flow-less navigation: one decision per prompt transcript (pure; the chooser may call an LLM).

    options: the request options (`callback`: "decline" (default) or "accept"; `account_number`).
    """

    intent: str
    options: Mapping[str, Any] = field(default_factory=dict)
    chooser: Chooser = field(default_factory=KeywordChooser)
    seen: list[list[Any]] = field(default_factory=list)  # [keys, label words, times heard] per menu
    history: list[str] = field(default_factory=list)
    prompts: int = 0
    status: str = ""
    last_choice: Choice | None = None
    account_sent: bool = False
    intent_spoken: bool = False

    def __post_init__(self) -> None:
        callback = str(self.options.get("callback", "decline") or "decline").lower()
        if callback not in ("decline", "accept"):
            raise ValueError(f"options.callback must be 'decline' or 'accept', got {callback!r}")
        self.callback = callback

    def _note(self, t: float, what: str) -> None:
        self.history.append(f"t={t:.1f}s {what}")

    def _end(self, status: str, reason: str, action: Action | None = None) -> Action:
        self.status = status
        if action is None:
            return Action("end", status=status, reason=reason)
        return Action(action.kind, digits=action.digits, text=action.text, status=status, reason=reason)

    def on_prompt(self, transcript: str, t: float = 0.0) -> Action:
        """The next Action after a prompt ended; `t` is the media time (seconds) it ended at."""
        if self.status:
            return Action("end", status=self.status, reason="navigation already ended")
        self.prompts += 1
        if self.prompts > MAX_PROMPTS:
            return self._end(NAVIGATION_LOOP, f"more than {MAX_PROMPTS} prompts without reaching a person")
        menu = parse_menu(transcript)
        offer = callback_option(menu)
        if offer is not None and self.callback == "accept":
            self._note(t, f"accepted callback ({offer.digits or offer.say})")
            act = Action("dtmf", digits=offer.digits) if offer.digits else Action("speak", text=offer.say)
            return self._end(CALLBACK_ACCEPTED, f"accepted the callback offer {offer.label!r}", act)
        account = str(self.options.get("account_number") or "")
        if account and not self.account_sent and asks_for_account(transcript):
            self.account_sent = True
            self._note(t, "sent account number")
            return Action(
                "dtmf",
                digits=account + "#",
                reason="the prompt asks for the account number",
                secret=True,
                wait_after_ms=DTMF_WAIT_AFTER_MS,
            )
        choices = [o for o in menu if not o.is_callback]
        if not choices:
            if offer is not None or is_hold_message(transcript):
                self._note(t, "hold message")
                return Action(
                    "hold", reason="declined callback offer" if offer is not None else "hold message"
                )
            if not self.intent_spoken and asks_open_question(transcript):
                self.intent_spoken = True
                self._note(t, "said the intent")
                return Action("speak", text=self.intent, reason="the prompt asks why we are calling")
        sig = menu_signature(choices)
        count = self._count_menu(sig, choices) if choices else 0
        if count >= LOOP_GIVE_UP_AT:
            return self._end(NAVIGATION_LOOP, f"the same menu {count} times: {sorted(sig)}")
        if count == LOOP_ESCAPE_AT:
            return self._escape(choices, t)
        choice = self.chooser.choose(self.intent, transcript, choices, self.history)
        problem = validate_choice(choice, choices, self.intent)
        if problem:
            choice = KeywordChooser().choose(self.intent, transcript, choices, self.history)
        if choice.action == "wait" and count >= 2:
            return self._guess(choices, t)  # heard twice and nothing fits: waiting longer will not help
        self.last_choice = choice
        self._note(t, f"{choice.action} {choice.digits or choice.text} ({choice.source}: {choice.reason})")
        return self._act(choice)

    def _count_menu(self, keys: frozenset[str], choices: list[MenuOption]) -> int:
        """How many times this menu was heard: the same keys and similar label words (STT noise allowed)."""
        words = {w for o in choices for w in normalize(o.label).split() if len(w) > 2}
        for entry in self.seen:
            if entry[0] != keys:
                continue
            union = words | entry[1]
            if not union or len(words & entry[1]) / len(union) >= SAME_MENU_OVERLAP:
                entry[1] |= words
                entry[2] += 1
                return int(entry[2])
        self.seen.append([keys, set(words), 1])
        return 1

    def _guess(self, choices: list[MenuOption], t: float) -> Action:
        staffed = next((o for o in choices if is_staffed_option(o)), None)
        if staffed is not None and staffed.digits:
            act = Action(
                "dtmf",
                digits=staffed.digits,
                wait_after_ms=DTMF_WAIT_AFTER_MS,
                reason=f"nothing fits the intent; {staffed.label!r} is likely staffed",
            )
            self._note(t, act.reason)
            return act
        return self._escape(choices, t)

    def _escape(self, choices: list[MenuOption], t: float) -> Action:
        person = next((o for o in choices if is_person_option(o)), None)
        if person is not None and person.digits:
            act = Action(
                "dtmf",
                digits=person.digits,
                reason="menu repeats: asking for a person",
                wait_after_ms=DTMF_WAIT_AFTER_MS,
            )
        elif any(o.say for o in choices):
            act = Action("speak", text=SPOKEN_ESCAPES[0], reason="menu repeats: asking for a person")
        else:
            act = Action(
                "dtmf",
                digits="0",
                reason="menu repeats: pressing 0 for an operator",
                wait_after_ms=DTMF_WAIT_AFTER_MS,
            )
        self._note(t, act.reason)
        return act

    def _act(self, choice: Choice) -> Action:
        reason = f"{choice.source}: {choice.reason}"
        if choice.action == "dtmf":
            return Action("dtmf", digits=choice.digits, reason=reason, wait_after_ms=DTMF_WAIT_AFTER_MS)
        if choice.action == "say":
            return Action("speak", text=choice.text, reason=reason)
        if choice.action == "hold":
            return Action("hold", reason=reason)
        if choice.action == "give_up":
            return self._end(NAVIGATION_FAILED, reason)
        return Action("listen", reason=reason)
