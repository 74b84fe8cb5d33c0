"""ESL wire format, server side: pure functions, no sockets.

Byte-exact with FreeSWITCH 1.10.12 (``../shared/reference/freeswitch.md`` §1):
replies start with ``Content-Type``, events with ``Content-Length``; plain event
values are URL-encoded with FreeSWITCH's unsafe set and upper-case hex, an event
body follows an inner ``Content-Length`` line; json events carry the body in
``_body``.  ``CommandParser`` is the inbound half (client commands), fed bytes in
any split, h11 style.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

DISCONNECT_TEXT = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
MAX_BODY = 16 * 1024 * 1024  # inbound Content-Length cap (mod_event_socket MAX_CONTENT_LENGTH)

# bytes switch_url_encode escapes: controls, space, non-ASCII, the unsafe set, and a % not starting %XX
_ESCAPE = re.compile(rb'[^\x21-\x7e]|[#&+:;<=>?@\[\\\]^`{|}"]|%(?![0-9A-Fa-f]{2})')

Headers = list[tuple[str, str]]


@functools.lru_cache(maxsize=8192)  # most header values repeat from event to event
def url_encode(value: str) -> str:
    """switch_url_encode_opt(double_encode=false): %XX upper-case; an existing %XX escape is kept."""
    raw = value.encode("utf-8")
    return _ESCAPE.sub(lambda m: b"%%%02X" % m.group()[0], raw).decode("ascii")


def serialize_plain(headers: Headers, body: str | None = None) -> bytes:
    """The text/event-plain block (without the outer frame)."""
    lines = [f"{name}: {url_encode(value) if value != '' else '_undef_'}\n" for name, value in headers]
    text = "".join(lines)
    if body is not None:
        b = body.encode("utf-8")
        return text.encode("utf-8") + f"Content-Length: {len(b)}\n\n".encode() + b
    return (text + "\n").encode("utf-8")


def serialize_json(headers: Headers, body: str | None = None) -> bytes:
    """One unformatted JSON object; duplicate header names are kept, like cJSON does."""
    parts = [f"{json.dumps(n, ensure_ascii=False)}:{json.dumps(v, ensure_ascii=False)}" for n, v in headers]
    if body is not None:
        parts.append(f'"Content-Length":"{len(body.encode("utf-8"))}"')
        parts.append(f'"_body":{json.dumps(body, ensure_ascii=False)}')
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def event_frame(fmt: str, headers: Headers, body: str | None = None) -> bytes:
    payload = serialize_json(headers, body) if fmt == "json" else serialize_plain(headers, body)
    ctype = "text/event-json" if fmt == "json" else "text/event-plain"
    return f"Content-Length: {len(payload)}\nContent-Type: {ctype}\n\n".encode() + payload


def auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def command_reply(text: str, extra: Headers | None = None) -> bytes:
    head = f"Content-Type: command/reply\nReply-Text: {text}\n"
    for name, value in extra or []:
        head += f"{name}: {value}\n"
    return (head + "\n").encode("utf-8")


def api_response(body: str) -> bytes:
    b = body.encode("utf-8")
    return f"Content-Type: api/response\nContent-Length: {len(b)}\n\n".encode() + b


def disconnect_notice() -> bytes:
    b = DISCONNECT_TEXT.encode()
    return f"Content-Type: text/disconnect-notice\nContent-Length: {len(b)}\n\n".encode() + b


def log_data(level: int, file: str, func: str, line: int, text: str, user_data: str = "") -> bytes:
    b = text.encode("utf-8")
    return (
        f"Content-Type: log/data\nContent-Length: {len(b)}\nLog-Level: {level}\nText-Channel: 3\n"
        f"Log-File: {file}\nLog-Func: {func}\nLog-Line: {line}\nUser-Data: {user_data}\n\n"
    ).encode() + b


class ProtocolError(Exception):
    """The client sent something the switch would drop the connection for."""


@dataclass
class Command:
    line: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def word(self) -> str:
        return self.line.split(" ", 1)[0].lower() if self.line else ""

    @property
    def rest(self) -> str:
        parts = self.line.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""


class CommandParser:
    """Client -> switch framing: a command line, optional headers, a blank line, optional body."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: Command | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_command(self) -> Command | None:
        if self._pending is not None:
            if len(self._buf) < self._need:
                return None
            cmd = self._pending
            cmd.body = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._pending = None
            return cmd
        # skip leading blank lines (MES read_packet)
        while self._buf[:1] in (b"\n", b"\r"):
            del self._buf[:1]
        end, sep = _find_blank(self._buf)
        if end < 0:
            return None
        block = bytes(self._buf[:end]).decode("utf-8", errors="replace")
        del self._buf[: end + sep]
        lines = [ln.rstrip("\r") for ln in block.split("\n")]
        cmd = Command(lines[0].strip())
        for ln in lines[1:]:
            if ":" in ln:
                name, value = ln.split(":", 1)
                cmd.headers[name.strip()] = value.lstrip(" ")
        length = cmd.headers.get("Content-Length") or cmd.headers.get("content-length")
        if length:
            try:
                n = int(length)
            except ValueError as exc:
                raise ProtocolError(f"bad Content-Length {length!r}") from exc
            if n < 0 or n > MAX_BODY:
                raise ProtocolError(f"Content-Length out of range: {n}")
            if n:
                self._pending, self._need = cmd, n
                return self.next_command()
        return cmd


def _find_blank(buf: bytearray) -> tuple[int, int]:
    """Index of the end of the header block and the separator length (\\n\\n, \\r\\n\\r\\n, \\n\\r\\n)."""
    best = (-1, 0)
    for sep in (b"\n\n", b"\r\n\r\n", b"\n\r\n"):
        i = buf.find(sep)
        if i >= 0 and (best[0] < 0 or i < best[0]):
            best = (i, len(sep))
    return best
