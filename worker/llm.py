"""Choosing a menu option for the caller's intent: an LLM, and an embedded fallback.

`KeywordChooser` is pure and deterministic (token overlap + a synonyms table +
fuzzy spelling); it is what runs with no LLM configured and whenever the LLM
fails.  `LlmChooser` asks any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM,
LM Studio) for a strict JSON answer (schemas/llm_choice.json), retries
transport failures with backoff, and falls back on a timeout, a garbage answer
or digits that are not on the menu.  `make_chooser(settings)` picks one.

The navigator re-checks every choice with `validate_choice` anyway: the model's
digits are never sent unless the menu offered them (or they are 0, # or *).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jsonschema

from worker.menu import MenuOption, normalize

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "llm_choice.json"
ACTIONS = ("dtmf", "say", "wait", "hold", "give_up")
ALWAYS_ALLOWED_DIGITS = frozenset({"0", "#", "*"})  # operator / confirm / back: valid on nearly every menu
SPOKEN_ESCAPES = ("representative", "agent", "operator")

# Tunables of the LLM client.
LLM_TIMEOUT_S = 8.0  # one request, seconds
LLM_RETRIES = 2  # extra attempts after a transport failure (timeout, 5xx, 429, refused)
LLM_BACKOFF_S = 0.5  # first backoff, doubled per retry, seconds
LLM_MAX_TOKENS = 200

# Tunables of the fallback.
MATCH_THRESHOLD = 0.34  # below this score an option does not match the intent
FUZZY_RATIO = 0.84  # difflib ratio for two words to count as the same (STT spelling noise)


@dataclass(frozen=True)
class Choice:
    """What to do with one prompt (the shape of schemas/llm_choice.json, plus where it came from)."""

    action: str
    digits: str = ""
    text: str = ""
    confidence: float = 0.0
    reason: str = ""
    source: str = "fallback"  # "llm" or "fallback"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "action": self.action,
            "confidence": self.confidence,
            "reason": self.reason,
            "source": self.source,
        }
        if self.digits:
            d["digits"] = self.digits
        if self.text:
            d["text"] = self.text
        return d


class Chooser(Protocol):
    def choose(
        self, intent: str, transcript: str, options: Sequence[MenuOption], history: Sequence[str] = ()
    ) -> Choice: ...


def validate_choice(choice: Choice, options: Sequence[MenuOption], intent: str = "") -> str:
    """'' when the choice may be executed, else why not (digits not offered, unknown action...)."""
    if choice.action not in ACTIONS:
        return f"unknown action {choice.action!r}"
    if choice.action == "dtmf":
        offered = {o.digits for o in options if o.digits}
        if not choice.digits:
            return "dtmf without digits"
        if choice.digits not in offered and choice.digits not in ALWAYS_ALLOWED_DIGITS:
            return f"digits {choice.digits!r} are not on the menu (offered: {sorted(offered)})"
    if choice.action == "say":
        said = normalize(choice.text)
        allowed = {normalize(o.say) for o in options if o.say} | set(SPOKEN_ESCAPES)
        if intent:
            allowed.add(normalize(intent))
        if said not in allowed:
            return f"text {choice.text!r} is not a spoken option"
    return ""


# --- the embedded fallback ------------------------------------------------------------------

STOP_WORDS = frozenset(
    "a an the to for of on in my your our i me you we it is are be am was with about and or if this that "
    "please want would like need have has do does from at by as so just some any get".split()
)

# Concept groups: a word in an intent and a word in a label that share a group match.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "billing": (
        "bill",
        "billing",
        "bills",
        "payment",
        "payments",
        "pay",
        "charge",
        "charges",
        "charged",
        "statement",
        "invoice",
        "refund",
        "dispute",
        "disputes",
        "fee",
        "fees",
        "account",
        "accounts",
        "overcharged",
    ),
    "balance": ("balance", "balances", "available", "funds"),
    "fraud": (
        "fraud",
        "stolen",
        "lost",
        "unauthorized",
        "suspicious",
        "dispute",
        "disputes",
        "scam",
        "identity",
        "theft",
        "charge",
        "charges",
        "card",
        "cards",
    ),
    "person": (
        "representative",
        "rep",
        "agent",
        "operator",
        "person",
        "human",
        "someone",
        "associate",
        "specialist",
        "live",
        "real",
        "talk",
        "speak",
        "customer",
        "service",
        "attendant",
    ),
    "support": (
        "technical",
        "tech",
        "support",
        "internet",
        "outage",
        "working",
        "broken",
        "repair",
        "troubleshoot",
        "troubleshooting",
        "connection",
        "wifi",
        "problem",
        "problems",
        "issue",
        "issues",
        "trouble",
        "help",
        "down",
        "error",
    ),
    "sales": (
        "sales",
        "buy",
        "purchase",
        "new",
        "upgrade",
        "plan",
        "plans",
        "sign",
        "offer",
        "offers",
        "pricing",
        "price",
        "quote",
    ),
    "orders": (
        "order",
        "orders",
        "delivery",
        "shipping",
        "shipment",
        "package",
        "track",
        "tracking",
        "return",
        "returns",
        "exchange",
    ),
    "cancel": ("cancel", "cancellation", "disconnect", "close", "terminate", "stop", "end"),
    "claims": ("claim", "claims", "accident", "damage", "insurance"),
    "pharmacy": ("pharmacy", "prescription", "prescriptions", "refill", "medication", "pharmacist"),
    "appointments": ("appointment", "appointments", "schedule", "reschedule", "booking", "book", "visit"),
    "login": ("password", "login", "log", "username", "locked", "reset", "pin", "access"),
    "hours": ("hours", "location", "locations", "address", "directions", "open"),
    "other": ("other", "else", "all", "questions", "general", "something", "more"),
}
_CONCEPTS: dict[str, set[str]] = {}
for _concept, _words in SYNONYMS.items():
    for _w in _words:
        _CONCEPTS.setdefault(_w, set()).add(_concept)

PERSON_WORDS = frozenset(
    {"representative", "agent", "operator", "person", "associate", "specialist", "attendant"}
)
OTHER_PHRASES = (
    "all other",
    "other questions",
    "something else",
    "any other",
    "everything else",
    "more options",
)


# Words too common in menus to identify an option by themselves ("to talk to ...", "questions about ...").
GENERIC_WORDS = frozenset(
    {"talk", "speak", "reach", "call", "calling", "question", "questions", "help", "service"}
)
PERSON_BONUS = 0.15


def _content(text: str) -> list[str]:
    return [w for w in normalize(text).split() if w not in STOP_WORDS and not w.isdigit()]


def _stem(w: str) -> str:
    for suf in ("ing", "ies", "es", "s", "ed"):
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[: -len(suf)]
    return w


def _same_word(a: str, b: str) -> bool:
    if a == b or _stem(a) == _stem(b):
        return True
    return len(a) >= 5 and len(b) >= 5 and difflib.SequenceMatcher(None, a, b).ratio() >= FUZZY_RATIO


def _concepts(words: list[str]) -> set[str]:
    out: set[str] = set()
    for w in words:
        out |= _CONCEPTS.get(w, set()) | _CONCEPTS.get(_stem(w), set())
    return out


def match_score(intent: str, label: str) -> float:
    """How well a menu label fits the intent, 0..1 (pure; word overlap, then shared concepts)."""
    iw, lw = _content(intent), _content(label)
    if not iw or not lw:
        return 0.0
    specific = [w for w in lw if w not in GENERIC_WORDS]
    direct = sum(1 for w in specific if any(_same_word(w, x) for x in iw)) / len(lw)
    ic, lc = _concepts(iw), _concepts(lw) - {"other"}
    concept = len(ic & lc) / len(lc) if lc else 0.0
    bonus = PERSON_BONUS if "person" in ic and set(lw) & PERSON_WORDS else 0.0  # names a person
    return min(1.0, max(direct, 0.8 * concept + 0.2 * direct) + bonus)


def is_person_option(option: MenuOption) -> bool:
    return bool(set(normalize(option.label).split()) & PERSON_WORDS)


# Options that usually end in a recording, not a person.
INFO_WORDS = frozenset(
    "hours location locations directions address balance balances directory fax website status repeat hear "
    "again menu automated recording recorded information spanish espanol".split()
)


def is_staffed_option(option: MenuOption) -> bool:
    """An option that may reach people (not hours, balances, directories, repeats); unlabelled: no."""
    words = set(normalize(option.label).split())
    return bool(words) and not words & INFO_WORDS


def _is_other_option(option: MenuOption) -> bool:
    label = f" {normalize(option.label)} "
    return any(f" {p} " in label for p in OTHER_PHRASES)


def _press(option: MenuOption, confidence: float, reason: str) -> Choice:
    if option.digits:
        return Choice("dtmf", digits=option.digits, confidence=round(confidence, 3), reason=reason)
    return Choice("say", text=option.say, confidence=round(confidence, 3), reason=reason)


@dataclass
class KeywordChooser:
    """The deterministic fallback: best label match, else a person, else 'all other questions', else wait."""

    threshold: float = MATCH_THRESHOLD

    def choose(
        self, intent: str, transcript: str, options: Sequence[MenuOption], history: Sequence[str] = ()
    ) -> Choice:
        candidates = [o for o in options if not o.is_callback]
        if not candidates:
            return Choice("wait", confidence=0.5, reason="no menu options heard")
        scored = sorted(
            ((match_score(intent, o.label), i, o) for i, o in enumerate(candidates)),
            key=lambda s: (-s[0], s[1]),
        )
        best_score, _, best = scored[0]
        if best_score >= self.threshold:
            return _press(best, best_score, f"intent matches {best.label!r}")
        person = next((o for o in candidates if is_person_option(o)), None)
        if person is not None:
            return _press(
                person, 0.4, f"no option matches the intent; asking for a person ({person.label!r})"
            )
        other = next((o for o in candidates if _is_other_option(o)), None)
        if other is not None:
            return _press(other, 0.3, f"no option matches the intent; taking {other.label!r}")
        if "person" in _concepts(_content(intent)):
            staffed = next((o for o in candidates if is_staffed_option(o)), None)
            if staffed is not None:
                return _press(staffed, 0.25, f"no person option; {staffed.label!r} is likely staffed")
        return Choice("wait", confidence=0.2, reason="no option matches the intent; waiting for more options")


# --- the LLM ------------------------------------------------------------------------------

SYSTEM_PROMPT = """You navigate a company's automated phone menu (IVR) for a caller.
Given the caller's intent, the transcript of the latest prompt (from speech recognition, so it may
contain errors) and the options parsed from it, decide the next action. Answer with ONE JSON object
only, no prose:
{"action": "dtmf"|"say"|"wait"|"hold"|"give_up", "digits": "<keys to press>", "text": "<words to say>",
 "confidence": <0..1>, "reason": "<short why>"}
- "dtmf": press digits; only keys offered by the menu, or 0, # or *.
- "say": speak text (menus that accept speech); use the option's words, or "representative".
- "wait": the menu is not finished or nothing fits yet.
- "hold": the prompt is a hold message ("please hold", "your call is important").
- "give_up": the menu cannot serve the intent at all.
Never accept a callback offer. Prefer the option that best fits the intent; if none fits, the one
that reaches a live person."""


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def build_messages(
    intent: str, transcript: str, options: Sequence[MenuOption], history: Sequence[str]
) -> list[dict[str, str]]:
    """The chat messages for one decision (pure)."""
    lines = [f"Caller intent: {intent}", f"Prompt transcript: {transcript}", "Parsed options:"]
    lines += [
        f"- key {o.digits or '(none)'}: {o.label or '(no label)'}" + (f" (or say {o.say!r})" if o.say else "")
        for o in options
    ] or ["- (none parsed)"]
    if history:
        lines.append("Earlier in this call: " + "; ".join(history[-6:]))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_answer(content: str | None, validator: jsonschema.Draft202012Validator) -> Choice:
    """The model's text as a validated Choice; ValueError with the reason otherwise (pure)."""
    if not content:
        raise ValueError("empty answer")
    text = content.strip()
    if text.startswith("```"):  # some local models wrap JSON in a fence despite json mode
        m = _JSON_OBJECT.search(text)
        text = m.group(0) if m else text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer is not JSON: {exc}") from exc
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    if errors:
        raise ValueError(f"answer does not fit llm_choice.json: {errors[0].message}")
    return Choice(
        action=data["action"],
        digits=data.get("digits", ""),
        text=data.get("text", ""),
        confidence=float(data["confidence"]),
        reason=data["reason"],
        source="llm",
    )


@dataclass
class LlmChooser:
    """An OpenAI-compatible chat model with strict JSON answers; `fallback` decides whenever it cannot."""

    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = LLM_TIMEOUT_S
    retries: int = LLM_RETRIES
    backoff_s: float = LLM_BACKOFF_S
    fallback: Chooser = field(default_factory=KeywordChooser)
    sleep: Callable[[float], None] = time.sleep  # cooperative under gevent's monkey patching
    call_id: str = ""
    _format_level: int = 0  # 0 json_schema, 1 json_object, 2 none (server refused)

    def __post_init__(self) -> None:
        import openai

        if not self.base_url or not self.model:
            raise ValueError("LlmChooser needs base_url and model (LLM_BASE_URL, LLM_MODEL)")
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "not-needed",
            timeout=self.timeout_s,
            max_retries=0,
        )
        self._validator = jsonschema.Draft202012Validator(_schema())

    def _response_format(self) -> dict[str, Any] | None:
        if self._format_level == 0:
            return {"type": "json_schema", "json_schema": {"name": "llm_choice", "schema": _schema()}}
        if self._format_level == 1:
            return {"type": "json_object"}
        return None

    def _ask(self, messages: list[dict[str, str]]) -> str | None:
        """One answer text; retries transport failures; downgrades response_format on 400."""
        oa = self._openai
        attempt = 0
        while True:
            kwargs: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "temperature": 0,
                "max_tokens": LLM_MAX_TOKENS,
            }
            fmt = self._response_format()
            if fmt is not None:
                kwargs["response_format"] = fmt
            try:
                resp = self._client.chat.completions.create(**kwargs)
                return resp.choices[0].message.content if resp.choices else None
            except oa.BadRequestError:
                if self._format_level >= 2:
                    raise
                self._format_level += 1
                log.info(
                    "call %s: LLM refused the response_format; trying level %d",
                    self.call_id,
                    self._format_level,
                )
                continue
            except (
                oa.APITimeoutError,
                oa.APIConnectionError,
                oa.InternalServerError,
                oa.RateLimitError,
            ) as exc:
                if attempt >= self.retries:
                    raise
                delay = self.backoff_s * (2**attempt)
                attempt += 1
                log.warning(
                    "call %s: LLM %s; retry %d/%d in %.2fs",
                    self.call_id,
                    type(exc).__name__,
                    attempt,
                    self.retries,
                    delay,
                )
                self.sleep(delay)

    def choose(
        self, intent: str, transcript: str, options: Sequence[MenuOption], history: Sequence[str] = ()
    ) -> Choice:
        try:
            content = self._ask(build_messages(intent, transcript, options, history))
            choice = parse_answer(content, self._validator)
        except ValueError as exc:
            log.warning("call %s: LLM answer unusable (%s); using the fallback", self.call_id, exc)
            return self.fallback.choose(intent, transcript, options, history)
        except self._openai.OpenAIError as exc:
            log.warning("call %s: LLM unavailable (%s); using the fallback", self.call_id, type(exc).__name__)
            return self.fallback.choose(intent, transcript, options, history)
        problem = validate_choice(choice, options, intent)
        if problem:
            log.warning("call %s: LLM choice rejected (%s); using the fallback", self.call_id, problem)
            return self.fallback.choose(intent, transcript, options, history)
        return choice


def make_chooser(settings: Any, call_id: str = "") -> Chooser:
    """LlmChooser when LLM_BASE_URL and LLM_MODEL are set, else the embedded KeywordChooser."""
    if getattr(settings, "llm_base_url", "") and getattr(settings, "llm_model", ""):
        return LlmChooser(settings.llm_base_url, settings.llm_model, settings.llm_api_key, call_id=call_id)
    return KeywordChooser()
