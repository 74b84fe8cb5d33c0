"""mod_audio_fork, client side: a real RFC 6455 WebSocket client over a gevent socket.

Like the captured FreeSWITCH module (``freeswitch.md`` §4): the upgrade carries
``Host`` without the port, ``Origin: http://<host>``, ``Sec-WebSocket-Protocol:
audio.drachtio.org`` and Pragma/Cache-Control; the first frame is the metadata
TEXT frame, then raw L16 LE binary frames of 20 ms (320 B mono 8k, 640 B mono
16k, 1280 B stereo 16k); ``stop`` sends the final text then Close 1000; server
text messages become ``mod_audio_fork::*`` events; no reconnect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.queue
import numpy as np

from sim import audio

log = logging.getLogger(__name__)

SUBPROTOCOL = "audio.drachtio.org"
CONNECT_TIMEOUT_S = 5.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_URL_RE = re.compile(r"^(wss?|https?)://([^/:]+)(?::(\d+))?(/.*)?$")


class ForkError(ValueError):
    """Bad uuid_audio_fork arguments."""


@dataclass(frozen=True)
class ForkTarget:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> ForkTarget:
        m = _URL_RE.match(url)
        if not m:
            raise ForkError(f"bad websocket url {url!r}")
        scheme, host, port, path = m.groups()
        if scheme in ("wss", "https"):
            raise ForkError("wss:// is not supported by the stand-in switch")
        return cls(host, int(port or 80), path or "/")


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None = None) -> bytes:
    """A client frame (masked, FIN set)."""
    key = mask_key if mask_key is not None else os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    arr = np.frombuffer(payload, dtype=np.uint8)
    keyarr = np.frombuffer(key * (n // 4 + 1), dtype=np.uint8)[:n]
    return head + key + (arr ^ keyarr).tobytes()


class FrameReader:
    """Server -> client frames (unmasked, possibly fragmented): feed bytes, pop (opcode, payload)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._frag_op = 0
        self._frag = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> tuple[int, bytes] | None:
        while True:
            if len(self.buf) < 2:
                return None
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            i = 2
            if n == 126:
                if len(self.buf) < 4:
                    return None
                n = struct.unpack("!H", self.buf[2:4])[0]
                i = 4
            elif n == 127:
                if len(self.buf) < 10:
                    return None
                n = struct.unpack("!Q", self.buf[2:10])[0]
                i = 10
            key = b""
            if b1 & 0x80:
                key = bytes(self.buf[i : i + 4])
                i += 4
            if len(self.buf) < i + n:
                return None
            payload = bytes(self.buf[i : i + n])
            del self.buf[: i + n]
            if key:
                payload = bytes(a ^ key[j % 4] for j, a in enumerate(payload))
            fin, op = b0 & 0x80, b0 & 0x0F
            if op == 0:
                self._frag += payload
                if fin:
                    out = (self._frag_op, bytes(self._frag))
                    self._frag = bytearray()
                    return out
                continue
            if not fin and op in (1, 2):
                self._frag_op, self._frag = op, bytearray(payload)
                continue
            return op, payload


class ForkSession:
    """One media bug: connects, streams the channel's audio, maps server messages to events.

    `emit(subclass, body)` sends a CUSTOM mod_audio_fork event for the channel.
    """

    def __init__(
        self,
        call_id: str,
        url: str,
        mix: str,
        rate: int,
        metadata: str | None,
        emit: Callable[[str, str | None], None],
    ) -> None:
        if mix not in ("mono", "mixed", "stereo"):
            raise ForkError(f"bad mix type {mix!r}")
        self.call_id = call_id
        self.target = ForkTarget.parse(url)
        self.mix = mix
        self.rate = rate
        self.metadata = metadata
        self.emit = emit
        self.frames_sent = 0
        self.connected = False
        self.closed = False  # we closed (stop/hangup) or the far end dropped
        self.dropped = False
        self.paused = False  # pause / graceful-shutdown: no audio frames
        self._q: gevent.queue.Queue = gevent.queue.Queue()
        self._sock: socket.socket | None = None
        self._last_read = 0
        self._last_write = 0
        self._greenlets: list[gevent.Greenlet] = []

    # -- media in -------------------------------------------------------------------------
    def push(self, read: np.ndarray, write: np.ndarray | None) -> None:
        """One 20 ms tick of the channel: read = far-end audio, write = what the switch sends to it."""
        if self.closed or self.paused:
            return
        if self.mix in ("stereo", "mixed") and write is None:
            return  # a parked, silent leg: no frames at all (capture af_stereo16k_parked)
        r = read
        if self.mix == "mono":
            if self.rate == 16000:
                up = audio.upsample_16k(r, self._last_read)
                self._last_read = int(r[-1])
                self._q.put((2, up.astype("<i2").tobytes()))
            else:
                self._q.put((2, r.astype("<i2").tobytes()))
            return
        w = write if write is not None else np.zeros_like(read)
        if self.mix == "mixed":
            r = np.clip(r.astype(np.int32) + w.astype(np.int32), -32768, 32767).astype(np.int16)
        if self.rate == 16000:
            r16 = audio.upsample_16k(r, self._last_read)
            self._last_read = int(r[-1])
            if self.mix == "stereo":
                w16 = audio.upsample_16k(w, self._last_write)
                self._last_write = int(w[-1])
                out = np.empty(len(r16) * 2, dtype=np.int16)
                out[0::2], out[1::2] = r16, w16
                r16 = out
            data = r16.astype("<i2").tobytes()
        elif self.mix == "stereo":
            out = np.empty(len(r) * 2, dtype=np.int16)
            out[0::2], out[1::2] = r, w
            data = out.astype("<i2").tobytes()
        else:
            data = r.astype("<i2").tobytes()
        self._q.put((2, data))

    def graceful_shutdown(self) -> None:
        """Stop audio and send one empty binary frame (the server may then send final results and close)."""
        if not self.closed:
            self.paused = True
            self._q.put((2, b""))

    def send_text(self, text: str) -> None:
        if not self.closed:
            self._q.put((1, text.encode("utf-8")))

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._greenlets.append(gevent.spawn(self._run))

    def stop(self, final_text: str | None = None) -> None:
        if self.closed:
            return
        if final_text:
            self._q.put((1, final_text.encode("utf-8")))
        self._q.put((8, struct.pack("!H", 1000)))
        self.closed = True

    def _connect(self) -> socket.socket:
        t = self.target
        sock = socket.create_connection((t.host, t.port), timeout=CONNECT_TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET {t.path} HTTP/1.1\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nHost: {t.host}\r\n"
            f"Origin: http://{t.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            buf += chunk
            if len(buf) > 65536:
                raise ConnectionError("upgrade response too large")
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"upgrade refused: {lines[0]}")
        hdrs = {
            ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip() for ln in lines[1:] if ":" in ln
        }
        accept = base64.b64encode(
            hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
        ).decode()
        if hdrs.get("sec-websocket-accept") != accept:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        proto = hdrs.get("sec-websocket-protocol")
        if proto is not None and proto != SUBPROTOCOL:
            raise ConnectionError("HS: PROTOCOL malformed")
        sock.settimeout(None)
        self._reader = FrameReader()
        self._reader.feed(rest)
        return sock

    def _run(self) -> None:
        try:
            sock = self._connect()
        except (OSError, ConnectionError) as exc:
            log.info(
                "call %s: audio fork to %s:%s failed: %s",
                self.call_id,
                self.target.host,
                self.target.port,
                exc,
            )
            self.closed = self.dropped = True
            self.emit(
                "mod_audio_fork::connect_failed",
                json.dumps({"reason": "Unable to connect"}, separators=(",", ":")),
            )
            return
        self._sock = sock
        self.connected = True
        self.emit("mod_audio_fork::connect", None)
        self._greenlets.append(gevent.spawn(self._read_loop, sock))
        try:
            if self.metadata:
                sock.sendall(encode_frame(1, self.metadata.encode("utf-8")))
            while True:
                op, payload = self._q.get()
                if self.dropped:
                    break
                sock.sendall(encode_frame(op, payload))
                if op == 2:
                    self.frames_sent += 1
                if op == 8:
                    break
        except OSError as exc:
            log.info("call %s: audio fork send failed: %s", self.call_id, exc)
        finally:
            gevent.sleep(0)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _read_loop(self, sock: socket.socket) -> None:
        reader = self._reader
        try:
            while True:
                item = reader.next()
                if item is None:
                    data = sock.recv(65536)
                    if not data:
                        break
                    reader.feed(data)
                    continue
                op, payload = item
                if op == 8:
                    break
                if op == 1:
                    self._server_text(payload.decode("utf-8", errors="replace"))
        except OSError:
            pass
        finally:
            if not self.closed:
                self.closed = self.dropped = True
                self._q.put((0, b""))
                self.emit("mod_audio_fork::disconnect", None)
            try:
                sock.close()
            except OSError:
                pass

    def _server_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            log.info("call %s: audio fork server sent non-JSON text", self.call_id)
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type", "json")
        data = msg.get("data")
        body = json.dumps(data, separators=(",", ":")) if data is not None else None
        if kind in ("transcription", "transfer", "error", "disconnect"):
            self.emit(f"mod_audio_fork::{kind}", body)
        elif kind == "killAudio":
            self.emit("mod_audio_fork::kill_audio", None)
        elif kind == "json":
            self.emit("mod_audio_fork::json", text)
        else:
            log.info("call %s: audio fork: unsupported msg type %s", self.call_id, kind)

    def kill(self) -> None:
        for g in self._greenlets:
            g.kill(block=False)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
