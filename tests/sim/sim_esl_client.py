"""Helpers for the stand-in switch tests: a small raw ESL client and capture parsing.

The client here is deliberately independent of worker/ (two implementations of
the protocol that must agree).  It frames on bytes, never on recv() boundaries.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.event
import gevent.queue
import numpy as np
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
        pairs: list[tuple[str, str]] = []
        for line in head.split("\n"):
            name, _, value = line.partition(": ")
            pairs.append((name, value))
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
        self.log: list[Msg] = []  # every message received, in order

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
                    msg = Msg(outer, pairs, body)
                    self.log.append(msg)
                    self.q.put(msg)
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

    def wait_event(self, pred: Callable[[Msg], bool], timeout: float = TIMEOUT) -> Msg:
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


class WsSink:
    """A tiny WebSocket server standing in for the worker's audio-fork endpoint.

    Records the upgrade request headers and every frame (opcode, payload, arrival time).
    `select_protocol=False` answers without Sec-WebSocket-Protocol; `close_after` closes
    (code 1000) after that many binary frames; `send_on_connect` are text messages sent after the upgrade.
    """

    def __init__(
        self,
        select_protocol: bool = True,
        close_after: int | None = None,
        send_on_connect: tuple[str, ...] = (),
    ) -> None:
        from gevent.server import StreamServer

        self.select_protocol = select_protocol
        self.close_after = close_after
        self.send_on_connect = send_on_connect
        self.request_line = ""
        self.headers: list[tuple[str, str]] = []
        self.frames: list[tuple[int, bytes, float]] = []
        self.close_code: int | None = None
        self.connected = gevent.event.Event()
        self.ended = gevent.event.Event()
        self.got_frame = gevent.event.Event()
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def url(self, path: str = "/fork") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def binary(self) -> list[tuple[int, bytes, float]]:
        return [f for f in self.frames if f[0] == 2]

    def wait_frames(self, n: int, timeout: float = TIMEOUT) -> None:
        with gevent.Timeout(timeout, AssertionError(f"fewer than {n} binary frames after {timeout}s")):
            while len(self.binary()) < n:
                self.got_frame.clear()
                self.got_frame.wait()

    def stop(self) -> None:
        self.server.stop(timeout=1)

    def _handle(self, sock: socket.socket, addr: tuple) -> None:
        import base64
        import hashlib
        import struct

        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(4096)
            if not data:
                return
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.request_line = lines[0]
        self.headers = [tuple(x.split(": ", 1)) for x in lines[1:]]  # type: ignore[misc]
        key = dict(self.headers)["Sec-WebSocket-Key"]
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()  # noqa: S324
        ).decode()
        resp = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n"
        )
        if self.select_protocol:
            resp += "Sec-WebSocket-Protocol: audio.drachtio.org\r\n"
        sock.sendall((resp + "\r\n").encode())
        self.connected.set()
        for text in self.send_on_connect:
            payload = text.encode()
            sock.sendall(bytes([0x81, len(payload)]) + payload)
        try:
            while True:
                while len(buf) < 2:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                n = buf[1] & 0x7F
                i = 2
                if n == 126:
                    while len(buf) < 4:
                        buf += sock.recv(65536)
                    n = struct.unpack("!H", buf[2:4])[0]
                    i = 4
                assert buf[1] & 0x80, "client frames must be masked"
                while len(buf) < i + 4 + n:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                mask = buf[i : i + 4]
                raw = np.frombuffer(buf[i + 4 : i + 4 + n], dtype=np.uint8)
                payload = (raw ^ np.frombuffer(mask * (n // 4 + 1), dtype=np.uint8)[:n]).tobytes()
                op = buf[0] & 0x0F
                buf = buf[i + 4 + n :]
                self.frames.append((op, payload, time.monotonic()))
                self.got_frame.set()
                if op == 8:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    sock.sendall(b"\x88\x02\x03\xe8")
                    return
                if self.close_after is not None and len(self.binary()) >= self.close_after:
                    sock.sendall(b"\x88\x02\x03\xe8")
                    self.close_code = 1000
                    return
        finally:
            self.ended.set()
            sock.close()
