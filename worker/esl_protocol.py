"""The FreeSWITCH Event Socket protocol, with no I/O (h11 style).

`EslParser.feed(bytes)` then `next_frame()` returns a `Frame` or `NEED_DATA`.
A frame is a header block, a blank line, then `Content-Length` body bytes
(freeswitch.md §1.1).  `decode_event(frame)` turns a `text/event-plain` or
`text/event-json` frame into an `EslEvent` the way libesl does (§1.5): outer
values URL-decoded, the inner block split at the FIRST blank line, inner values
URL-decoded one by one, the inner body left raw, duplicate headers kept.

The command builders return the exact command line the client sends; they
refuse input that would change the command's meaning on the wire (a newline
injects a second ESL command, a space splits an API argument, §3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

from worker.errors import CommandFailed, EslError, OriginateFailed

# --- tunables -----------------------------------------------------------------
MAX_HEADER_BLOCK = 64 * 1024  # bytes; FS header blocks are < 8 KiB, a bigger one is garbage
MAX_CONTENT_LENGTH = 16 * 1024 * 1024  # bytes; the limit FS itself applies (MES MAX_CONTENT_LENGTH)
MAX_DTMF_DIGITS = 99  # uuid_send_dtmf refuses longer strings
MAX_FORK_METADATA = 8192  # bytes, mod_audio_fork MAX_METADATA_LEN
MAX_FORK_URL = 512  # bytes, mod_audio_fork URL limit


class EslProtocolError(EslError):
    """The peer sent bytes that are not ESL (bad header line, bad Content-Length)."""

    code = "esl_protocol_error"


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()

# Content types FS sends (§1.1).
AUTH_REQUEST = "auth/request"
COMMAND_REPLY = "command/reply"
API_RESPONSE = "api/response"
EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
EVENT_XML = "text/event-xml"
DISCONNECT_NOTICE = "text/disconnect-notice"
RUDE_REJECTION = "text/rude-rejection"
LOG_DATA = "log/data"
EVENT_TYPES = frozenset({EVENT_PLAIN, EVENT_JSON, EVENT_XML})


class Headers(Mapping[str, str]):
    """Ordered header list; `[name]`/`.get` give the FIRST value, `.all(name)` every value."""

    __slots__ = ("_pairs", "_first")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: list[tuple[str, str]] = list(pairs)
        self._first: dict[str, str] = {}
        for name, value in self._pairs:
            self._first.setdefault(name, value)

    def __getitem__(self, name: str) -> str:
        return self._first[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self._pairs if n == name]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass(frozen=True)
class Frame:
    """One ESL message: outer headers (values URL-decoded) and the raw body bytes."""

    headers: Headers
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def is_event(self) -> bool:
        return self.content_type in EVENT_TYPES

    @property
    def reply_text(self) -> str:
        """`Reply-Text` of a command/reply."""
        return self.headers.get("Reply-Text", "")

    @property
    def text(self) -> str:
        """The body as text (api/response, log/data, disconnect notice)."""
        return self.body.decode("utf-8", errors="replace")


@dataclass
class EslEvent:
    """A decoded event.  `.headers` maps name -> first value; `.all(name)` keeps duplicates."""

    headers: Headers
    body: str = ""
    format: str = "plain"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The delivered event type.  FS re-fires some events (COMMAND -> PRIVATE_COMMAND) with the
        earlier headers kept first, so the LAST Event-Name is the type this event was delivered as."""
        names = self.headers.all("Event-Name")
        return names[-1] if names else ""

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def key(self) -> str:
        """What a waiter matches: the subclass for CUSTOM events, else the event name."""
        return self.subclass if self.name == "CUSTOM" and self.subclass else self.name

    @property
    def unique_id(self) -> str:
        return self.headers.get("Unique-ID", "")

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def all(self, name: str) -> list[str]:
        return self.headers.all(name)

    def __repr__(self) -> str:
        uid = self.unique_id or self.headers.get("Job-UUID", "")
        return f"EslEvent({self.key} {uid})"


def synthetic_event(name: str, **headers: str) -> EslEvent:
    """An event made by us, not FS (stream markers); its Event-Name starts with HS_."""
    return EslEvent(Headers([("Event-Name", name), *headers.items()]), format="synthetic")


# --- framing ------------------------------------------------------------------
def _parse_header_lines(block: bytes, *, decode: bool) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for line in block.decode("utf-8", errors="replace").split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name:
            raise EslProtocolError(f"bad ESL header line {line[:80]!r}")
        if value.startswith(" "):
            value = value.lstrip(" ")
        if decode and "%" in value:
            value = unquote(value)
        append((name.strip(), value))
    return pairs


def _content_length(headers: Headers) -> int:
    raw = headers.get("Content-Length")
    if raw is None:
        return 0
    try:
        n = int(raw.strip())
    except ValueError:
        raise EslProtocolError(f"bad Content-Length {raw[:40]!r}") from None
    if n < 0 or n > MAX_CONTENT_LENGTH:
        raise EslProtocolError(f"Content-Length {n} out of range")
    return n


class EslParser:
    """Incremental frame parser: `feed(data)`, then `next_frame()` until NEED_DATA."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers: Headers | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> Frame | _NeedData:
        if self._headers is None:
            # Skip stray blank lines between frames (FS never sends them; MES skips them inbound).
            start = 0
            while start < len(self._buf) and self._buf[start : start + 1] in (b"\n", b"\r"):
                start += 1
            if start:
                del self._buf[:start]
            end = self._buf.find(b"\n\n")
            crlf = self._buf.find(b"\r\n\r\n")
            sep_len = 2
            if crlf != -1 and (end == -1 or crlf < end):
                end, sep_len = crlf, 4
            if end == -1:
                if len(self._buf) > MAX_HEADER_BLOCK:
                    raise EslProtocolError(f"ESL header block longer than {MAX_HEADER_BLOCK} bytes")
                return NEED_DATA
            headers = Headers(_parse_header_lines(bytes(self._buf[:end]), decode=True))
            del self._buf[: end + sep_len]
            self._need = _content_length(headers)
            self._headers = headers
        if len(self._buf) < self._need:
            return NEED_DATA
        body = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        frame = Frame(self._headers, body)
        self._headers = None
        self._need = 0
        return frame

    def frames(self) -> Iterator[Frame]:
        """Every complete frame buffered so far."""
        while True:
            frame = self.next_frame()
            if isinstance(frame, _NeedData):
                return
            yield frame


def parse_frames(data: bytes) -> list[Frame]:
    """All complete frames in `data` (tests and tools)."""
    parser = EslParser()
    parser.feed(data)
    return list(parser.frames())


# --- events -------------------------------------------------------------------
class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (name, value) pairs."""


def _json_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, _Pairs):
        return json.dumps(dict(value), separators=(",", ":"))
    if isinstance(value, list):  # FS arrays; plain serializes them as ARRAY::a|:b
        return "ARRAY::" + "|:".join(str(v) for v in value)
    return json.dumps(value)


def decode_event(frame: Frame) -> EslEvent:
    """Decode a text/event-plain or text/event-json frame (freeswitch.md §1.5)."""
    ctype = frame.content_type
    if ctype == EVENT_PLAIN:
        data = frame.body
        cut = data.find(b"\n\n")
        block, rest = (data, b"") if cut == -1 else (data[:cut], data[cut + 2 :])
        headers = Headers(_parse_header_lines(block, decode=True))
        body = b""
        if "Content-Length" in headers:
            n = _content_length(headers)
            if n > len(rest):
                raise EslProtocolError(f"event body shorter than its Content-Length {n}")
            body = rest[:n]
        return EslEvent(headers, body.decode("utf-8", errors="replace"), "plain")
    if ctype == EVENT_JSON:
        try:
            obj = json.loads(frame.body, object_pairs_hook=_Pairs)  # keeps duplicate names, in order
        except ValueError as exc:
            raise EslProtocolError(f"bad JSON event: {exc}") from None
        if not isinstance(obj, _Pairs):
            raise EslProtocolError("JSON event is not an object")
        text = next((str(v) for k, v in obj if k == "_body"), "")
        pairs = [(str(k), _json_value(v)) for k, v in obj if k != "_body"]
        return EslEvent(Headers(pairs), text, "json")
    raise EslProtocolError(f"not an event frame: Content-Type {ctype!r}")


# --- replies ------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A classified reply text.  `status`: ok | err | usage | value."""

    status: str
    text: str  # the reply without its trailing newline
    detail: str  # what follows +OK / -ERR / -USAGE:

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "value")


# "The channel is not there" in each command's own words (freeswitch.md §9.6, §3.1).
_NO_CHANNEL = re.compile(
    r"^-ERR (No such channel!|Cannot locate session!|invalid uuid|Invalid uuid|invalid session id\b.*)$"
)


def classify_reply(text: str) -> Reply:
    """+OK / -ERR / -USAGE, plus the bare answers (`true`, `error/user_not_registered`, JSON)."""
    t = text.rstrip("\n")
    if t.startswith("+OK"):
        return Reply("ok", t, t[3:].strip())
    if t.startswith("-ERR"):
        return Reply("err", t, t[4:].strip())
    if t.startswith("-USAGE"):
        return Reply("usage", t, t[6:].lstrip(":").strip())
    if t.startswith("error/") or t in ("Invalid Gateway!",):
        return Reply("err", t, t)
    return Reply("value", t, t)


def is_no_such_channel(text: str) -> bool:
    """True for the several texts FS uses for 'that uuid is not a live channel'."""
    return bool(_NO_CHANNEL.match(text.rstrip("\n")))


def check_ok(text: str, what: str) -> Reply:
    """Raise CommandFailed unless the reply is +OK (or a bare value)."""
    reply = classify_reply(text)
    if not reply.ok:
        raise CommandFailed(f"{what} failed: {reply.text}", reply.text)
    return reply


def parse_originate_result(text: str) -> str:
    """`+OK <uuid>\\n` -> uuid; `-ERR <CAUSE>\\n` -> OriginateFailed(cause); -USAGE -> CommandFailed."""
    reply = classify_reply(text)
    if reply.status == "ok" and reply.detail:
        return reply.detail.split()[0]
    if reply.status == "err" and reply.detail:
        cause = reply.detail.split()[0]
        return _raise_originate(cause, reply.text)
    raise CommandFailed(f"originate: unexpected reply {reply.text[:200]!r}", reply.text)


def _raise_originate(cause: str, text: str) -> str:
    raise OriginateFailed(f"originate failed: {cause}", cause, text)


# --- command builders ---------------------------------------------------------
_UUID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DTMF_RE = re.compile(r"^[0-9*#A-DwW]+$")
_CAUSE_RE = re.compile(r"^[A-Z_0-9]+$")
_FORBIDDEN_VALUE_CHARS = set("'\"\\{}[]<>")


def _check_uuid(uuid: str) -> str:
    if not isinstance(uuid, str) or not _UUID_RE.match(uuid):
        raise ValueError(f"not a channel uuid: {uuid!r}")
    return uuid


def _check_token(value: str, what: str) -> str:
    """One API argument: no spaces, no control characters."""
    if not value or any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ValueError(f"{what} must be one word without spaces or control characters: {value!r}")
    return value


def command_bytes(command: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The wire form of one client command: the line, header lines, a blank line."""
    if not command or "\n" in command or "\r" in command:
        raise ValueError("an ESL command is a single non-empty line")
    lines = [command]
    for name, value in (headers or {}).items():
        if not _VAR_NAME_RE.match(name.replace("-", "_")) or "\n" in value or "\r" in value:
            raise ValueError(f"bad ESL header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def escape_var_value(value: object) -> str:
    """Escape a channel variable value for an originate `{k=v,...}` block (freeswitch.md §3.2).

    Commas become `\\,` and spaces `\\s`; quotes, backslashes, brackets and control
    characters cannot be carried safely and are refused.
    """
    text = str(value)
    bad = sorted({c for c in text if c in _FORBIDDEN_VALUE_CHARS or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise ValueError(f"channel variable value {text!r} contains characters that cannot be sent: {bad}")
    return text.replace(",", "\\,").replace(" ", "\\s")


def safe_var_value(value: object) -> str:
    """`value` with the characters escape_var_value refuses removed (for display names)."""
    return "".join(
        c for c in str(value) if c not in _FORBIDDEN_VALUE_CHARS and ord(c) >= 0x20 and ord(c) != 0x7F
    )


def originate_cmd(
    dial_string: str, variables: Mapping[str, object] | None = None, app: str = "park()"
) -> str:
    """`originate {k=v,...}<dial_string> &<app>` (send it with bgapi)."""
    _check_token(dial_string, "dial string")
    if dial_string[0] in "{[<":
        raise ValueError("pass channel variables in `variables`, not inside the dial string")
    parts = []
    for name, value in (variables or {}).items():
        if not _VAR_NAME_RE.match(name):
            raise ValueError(f"bad channel variable name {name!r}")
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        parts.append(f"{name}={escape_var_value(value)}")
    prefix = "{" + ",".join(parts) + "}" if parts else ""
    app = app.strip()
    if not app.startswith("&"):
        app = "&" + app
    if not re.match(r"^&[a-z_][a-z0-9_]*\(", app) or not app.endswith(")"):
        raise ValueError(f"app must look like park() or playback(/x.wav), got {app!r}")
    _check_token(app, "app")
    return f"originate {prefix}{dial_string} {app}"


def _rate_word(rate: int) -> str:
    if rate == 8000:
        return "8k"
    if rate == 16000:
        return "16k"
    if rate <= 0 or rate % 8000:
        raise ValueError(f"audio fork rate must be a multiple of 8000 Hz, got {rate}")
    return str(rate)


def fork_metadata_json(metadata: Mapping[str, Any]) -> str:
    """Compact JSON that survives mod_audio_fork's argument splitter (no spaces, quotes or backslashes)."""
    text = json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False)
    bad = sorted({c for c in text if c.isspace() or c in "'\\" or ord(c) > 0x7E})
    if bad:
        raise ValueError(
            f"audio fork metadata must be plain ASCII without spaces, quotes or backslashes: {bad}"
        )
    if len(text.encode()) > MAX_FORK_METADATA:
        raise ValueError(f"audio fork metadata longer than {MAX_FORK_METADATA} bytes")
    return text


def audio_fork_start_cmd(
    uuid: str,
    url: str,
    mix: str = "mono",
    rate: int = 8000,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """`uuid_audio_fork <uuid> start <url> <mono|mixed|stereo> <8k|16k> [{json}]` (§4.2)."""
    _check_uuid(uuid)
    _check_token(url, "audio fork url")
    if not re.match(r"^(ws|wss|http|https)://[^/]+", url):
        raise ValueError(f"audio fork url must be ws:// or wss://, got {url!r}")
    if len(url.encode()) > MAX_FORK_URL:
        raise ValueError(f"audio fork url longer than {MAX_FORK_URL} bytes")
    if mix not in ("mono", "mixed", "stereo"):
        raise ValueError(f"audio fork mix must be mono, mixed or stereo, got {mix!r}")
    cmd = f"uuid_audio_fork {uuid} start {url} {mix} {_rate_word(rate)}"
    if metadata is not None:
        cmd += " " + fork_metadata_json(metadata)
    return cmd


def audio_fork_stop_cmd(uuid: str, final_text: Mapping[str, Any] | None = None) -> str:
    cmd = f"uuid_audio_fork {_check_uuid(uuid)} stop"
    if final_text is not None:
        cmd += " " + fork_metadata_json(final_text)
    return cmd


def audio_fork_send_text_cmd(uuid: str, message: Mapping[str, Any]) -> str:
    return f"uuid_audio_fork {_check_uuid(uuid)} send_text {fork_metadata_json(message)}"


def uuid_kill_cmd(uuid: str, cause: str | None = None) -> str:
    cmd = f"uuid_kill {_check_uuid(uuid)}"
    if cause:
        if not _CAUSE_RE.match(cause):
            raise ValueError(f"bad hangup cause {cause!r}")
        cmd += f" {cause}"
    return cmd


def uuid_bridge_cmd(uuid_a: str, uuid_b: str) -> str:
    return f"uuid_bridge {_check_uuid(uuid_a)} {_check_uuid(uuid_b)}"


def uuid_broadcast_cmd(uuid: str, path: str, leg: str = "aleg") -> str:
    _check_token(path, "broadcast path")
    if leg not in ("aleg", "bleg", "holdb", "both"):
        raise ValueError(f"broadcast leg must be aleg, bleg, holdb or both, got {leg!r}")
    return f"uuid_broadcast {_check_uuid(uuid)} {path} {leg}"


def uuid_send_dtmf_cmd(uuid: str, digits: str, duration_ms: int | None = None) -> str:
    if not isinstance(digits, str) or not _DTMF_RE.match(digits) or len(digits) > MAX_DTMF_DIGITS:
        raise ValueError(f"DTMF digits must be 1-{MAX_DTMF_DIGITS} of 0-9 * # A-D w W, got {digits!r}")
    arg = digits if duration_ms is None else f"{digits}@{int(duration_ms)}"
    return f"uuid_send_dtmf {_check_uuid(uuid)} {arg}"


def uuid_record_cmd(uuid: str, action: str, path: str, limit_s: int | None = None) -> str:
    if action not in ("start", "stop"):
        raise ValueError(f"record action must be start or stop, got {action!r}")
    _check_token(path, "recording path")
    cmd = f"uuid_record {_check_uuid(uuid)} {action} {path}"
    if limit_s is not None and action == "start":
        cmd += f" {int(limit_s)}"
    return cmd


def uuid_exists_cmd(uuid: str) -> str:
    return f"uuid_exists {_check_uuid(uuid)}"


def uuid_break_cmd(uuid: str, all_: bool = False) -> str:
    return f"uuid_break {_check_uuid(uuid)}" + (" all" if all_ else "")


def uuid_setvar_cmd(uuid: str, name: str, value: str) -> str:
    if not _VAR_NAME_RE.match(name):
        raise ValueError(f"bad channel variable name {name!r}")
    return f"uuid_setvar {_check_uuid(uuid)} {name} {_check_token(value, 'variable value')}"


def uuid_getvar_cmd(uuid: str, name: str) -> str:
    if not _VAR_NAME_RE.match(name):
        raise ValueError(f"bad channel variable name {name!r}")
    return f"uuid_getvar {_check_uuid(uuid)} {name}"


def sched_hangup_cmd(uuid: str, seconds: int, cause: str = "ALLOTTED_TIMEOUT") -> str:
    secs = int(seconds)
    if secs <= 0:
        raise ValueError(f"max duration must be positive seconds, got {seconds!r}")
    if not _CAUSE_RE.match(cause):
        raise ValueError(f"bad hangup cause {cause!r}")
    return f"sched_hangup +{secs} {_check_uuid(uuid)} {cause}"


def event_subscribe_cmd(events: Iterable[str], fmt: str = "plain") -> str:
    """`event plain A B CUSTOM x::y`: subclasses (names with ::) after CUSTOM, last (§1.6)."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"event format must be plain or json, got {fmt!r}")
    core: list[str] = []
    custom: list[str] = []
    for name in events:
        _check_token(name, "event name")
        if name == "CUSTOM":
            continue
        (custom if "::" in name else core).append(name)
    words = core + (["CUSTOM", *custom] if custom else [])
    if not words:
        raise ValueError("no events to subscribe to")
    return f"event {fmt} " + " ".join(words)


def auth_cmd(password: str) -> str:
    if not password or "\n" in password or "\r" in password:
        raise ValueError("the ESL password must be a non-empty single line")
    return f"auth {password}"
