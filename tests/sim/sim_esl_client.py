"""Helpers for the stand-in switch tests: a small raw ESL client and capture parsing.

The client here is deliberately independent of worker/ (two implementations of
the protocol that must agree).  It frames on bytes, never on recv() boundaries.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from pathlib import Path

import gevent
import gevent.event
import gevent.queue
import pytest

PASSWORD = "ClueCon"
REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO.parent / "shared" / "reference" / "fs-captures"
COMPANIES = REPO / "sim" / "companies"
TIMEOUT = 10.0


def parse_frames(data: bytes) -> tuple[list[tuple[dict[str, str], list[tuple[str, str]], bytes]], bytes]:
    """Split a byte stream into (outer headers, outer header list, body) frames; returns the rest too."""
    frames = []
    i = 0
    while True:
        j = data.find(b"\n\n", i)
        if j < 0:
            break
        head = data[i:j].decode()
        pairs = [tuple(line.split(": ", 1)) for line in head.split("\n")]
        hdrs = dict(pairs)
        n = int(hdrs.get("Content-Length", "0"))
        if len(data) < j + 2 + n:
            break
        frames.append((hdrs, pairs, data[j + 2 : j + 2 + n]))
        i = j + 2 + n
    return frames, data[i:]


def parse_plain_event(body: bytes) -> tuple[list[tuple[str, str]], str | None]:
    text = body.decode()
    k = text.find("\n\n")
    head, rest = (text[:k], text[k + 2 :]) if k >= 0 else (text.rstrip("\n"), "")
    headers: list[tuple[str, str]] = []
    inner: int | None = None
    for line in head.split("\n"):
        name, value = line.split(": ", 1)
        if name == "Content-Length" and headers:
            inner = int(value)
            continue
        headers.append((name, urllib.parse.unquote(value)))
    return headers, (rest[:inner] if inner is not None else None)


class Msg:
    def __init__(self, outer: dict[str, str], pairs: list, body: bytes) -> None:
        self.outer = outer
        self.pairs = pairs
        self.raw_body = body
        self.headers: list[tuple[str, str]] = []
        self.body: str | None = None
        ctype = outer.get("Content-Type", "")
        if ctype == "text/event-plain":
            self.headers, self.body = parse_plain_event(body)
        elif ctype == "text/event-json":
            obj = json.loads(body)
            self.body = obj.pop("_body", None)
            obj.pop("Content-Length", None)
            self.headers = list(obj.items())

    @property
    def ctype(self) -> str:
        return self.outer.get("Content-Type", "")

    @property
    def is_event(self) -> bool:
        return self.ctype.startswith("text/event-")

    def get(self, name: str, default: str = "") -> str:
        for n, v in self.headers:
            if n == name:
                return v
        return default

    @property
    def name(self) -> str:
        return self.get("Event-Name")

    def __repr__(self) -> str:
        if self.is_event:
            return f"<event {self.name} {self.get('Event-Subclass')} {self.get('Unique-ID')[:8]}>"
        return f"<{self.ctype} {self.outer.get('Reply-Text', '')!r} {self.raw_body[:60]!r}>"


class RawEsl:
    """Minimal ESL client: a reader greenlet parses frames into a queue."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.settimeout(None)
        self.q: gevent.queue.Queue = gevent.queue.Queue()
        self.raw = bytearray()
        self.recv_sizes: list[int] = []
        self.closed = gevent.event.Event()
        self.reader = gevent.spawn(self._read)
        self.events: list[Msg] = []
        self.logs: list[Msg] = []

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.recv_sizes.append(len(data))
                self.raw += data
                buf += data
                frames, buf = parse_frames(buf)
                for outer, pairs, body in frames:
                    self.q.put(Msg(outer, pairs, body))
        except OSError:
            pass
        self.closed.set()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def next(self, timeout: float = TIMEOUT) -> Msg:
        msg = self.q.get(timeout=timeout)
        if msg.is_event:
            self.events.append(msg)
        return msg

    def reply(self, timeout: float = TIMEOUT) -> Msg:
        """The next non-event message (events seen meanwhile are kept in self.events)."""
        while True:
            msg = self.next(timeout)
            if msg.ctype == "log/data":
                self.logs.append(msg)
            elif not msg.is_event:
                return msg

    def command(self, line: str) -> Msg:
        self.send(line + "\n\n")
        return self.reply()

    def api(self, line: str) -> str:
        msg = self.command(f"api {line}")
        assert msg.ctype == "api/response", msg
        return msg.raw_body.decode()

    def wait_event(self, pred, timeout: float = TIMEOUT) -> Msg:  # type: ignore[no-untyped-def]
        for ev in self.events:
            if pred(ev):
                self.events.remove(ev)
                return ev
        with gevent.Timeout(timeout, AssertionError(f"event not seen within {timeout}s")):
            while True:
                msg = self.next()
                if msg.is_event and pred(msg):
                    self.events.remove(msg)
                    return msg

    def login(self, password: str = PASSWORD) -> None:
        assert self.next().ctype == "auth/request"
        assert self.command(f"auth {password}").outer["Reply-Text"] == "+OK accepted"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.reader.kill()


def need_captures() -> Path:
    if not CAPTURES.is_dir():
        pytest.skip(f"FreeSWITCH captures not found at {CAPTURES}")
    return CAPTURES
