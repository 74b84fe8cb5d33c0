"""mod_audio_fork, client side: a real RFC 6455 WebSocket client over a gevent socket.

Like the captured FreeSWITCH module (``freeswitch.md`` §4): the upgrade carries
``Host`` without the port, ``Origin: http://<host>``, ``Sec-WebSocket-Protocol:
audio.drachtio.org`` and Pragma/Cache-Control; the first frame is the metadata
TEXT frame, then raw L16 LE binary frames of 20 ms (320 B mono 8k, 640 B mono
16k, 1280 B stereo 16k); ``stop`` sends the final text then Close 1000; server
text messages become ``mod_audio_fork::*`` events; no reconnect.

Sending is cheap and never blocks the switch: ``push()`` keeps one frame's
PCM, and ``flush_all(forks)`` (called by the switch's media clock after each
wake-up) masks every pending frame of every fork in one numpy operation, then
writes each fork's backlog with one non-blocking ``os.write``.  Several frames
may share one TCP write; the byte stream stays exactly one masked WebSocket
frame per 20 ms, each with its own random key.  A peer that stops reading
fills the backlog; like mod_audio_fork's audio buffer
(``MOD_AUDIO_FORK_BUFFER_SECS``, default 2 s, ``freeswitch.md`` §4.3) it holds
at most BUFFER_S of wall time of audio, then new audio frames are dropped
and ``mod_audio_fork::buffer_overrun`` fires once per session; the socket
stays open and streaming resumes when the peer reads again.
Text frames (metadata, ``send_text``, the final text) and Close are never dropped.
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
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import gevent
import numpy as np
from gevent import socket as gsocket

from sim import audio

log = logging.getLogger(__name__)

SUBPROTOCOL = "audio.drachtio.org"
CONNECT_TIMEOUT_S = 20.0  # connect + upgrade (libwebsockets 4.x AWAITING_TIMEOUT is 20 s)
BUFFER_S = 2.0  # wall seconds of audio a fork may hold unsent (MOD_AUDIO_FORK_BUFFER_SECS default)
DRAIN_TIMEOUT_S = 5.0  # after stop: how long the final text + Close may take to reach a slow peer
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LITTLE = sys.byteorder == "little"  # int16 arrays are already L16 LE: tobytes() without a copy
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


class _MaskKeys:
    """Masking keys from os.urandom, fetched 4 KiB at a time (one syscall per 1,024 frames)."""

    CHUNK = 4096

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take(self) -> bytes:
        if self._pos + 4 > len(self._buf):
            self._buf, self._pos = os.urandom(self.CHUNK), 0
        key = self._buf[self._pos : self._pos + 4]
        self._pos += 4
        return key


_keys = _MaskKeys()


def frame_header(opcode: int, n: int) -> bytes:
    """FIN + opcode, MASK + payload length (the 4-byte key follows)."""
    if n < 126:
        return bytes((0x80 | opcode, 0x80 | n))
    if n < 65536:
        return bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
    return bytes((0x80 | opcode, 0x80 | 127)) + struct.pack("!Q", n)


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None = None) -> bytes:
    """A client frame (masked with a fresh random key unless one is given, FIN set)."""
    key = mask_key if mask_key is not None else _keys.take()
    n = len(payload)
    head = frame_header(opcode, n)
    if not n:
        return head + key
    # XOR as one big integer: ~1 us for a 320-byte frame, 5x cheaper than numpy on arrays this small
    mask = int.from_bytes((key * ((n + 3) // 4))[:n], "little")
    return head + key + (int.from_bytes(payload, "little") ^ mask).to_bytes(n, "little")


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
    The owner calls `push()` once per 20 ms tick and `flush_all()` (or
    `flush()`) after its ticks, in the same greenlet run; neither blocks.
    Connecting, reading server messages and the final drain after `stop()`
    run in the fork's own greenlets.
    """

    def __init__(
        self,
        call_id: str,
        url: str,
        mix: str,
        rate: int,
        metadata: str | None,
        emit: Callable[[str, str | None], None],
        speed: float = 1.0,
    ) -> None:
        """`speed`: the switch's; the backlog holds BUFFER_S of wall time, BUFFER_S x speed of media."""
        if mix not in ("mono", "mixed", "stereo"):
            raise ForkError(f"bad mix type {mix!r}")
        self.call_id = call_id
        self.target = ForkTarget.parse(url)
        self.mix = mix
        self.rate = rate
        self.metadata = metadata
        self.emit = emit
        self.frames_queued = 0  # audio frames put in the backlog (sent, or still waiting to be)
        self.frames_dropped = 0  # audio frames dropped because the backlog was full
        self.overrun = False  # buffer_overrun fired (once per session)
        self.connected = False
        self.closed = False  # we closed (stop/hangup) or the far end dropped
        self.dropped = False
        self.paused = False  # pause / graceful-shutdown: no audio frames
        channels = 2 if mix == "stereo" else 1
        self.frame_bytes = rate // 1000 * audio.FRAME_MS * 2 * channels
        wire = self.frame_bytes + (8 if self.frame_bytes >= 126 else 6)
        self.wire_bytes = wire
        self.audio_head = frame_header(2, self.frame_bytes)
        self.backlog_limit = int(BUFFER_S * max(1.0, speed) * 1000 / audio.FRAME_MS) * wire  # bytes
        self._out = bytearray()  # encoded frames not yet written to the socket, in order
        self._audio: list[bytes] = []  # PCM pushed since the last flush (always empty between wake-ups)
        self._sock: socket.socket | None = None
        self._fd = -1
        self._last_read = 0
        self._last_write = 0
        self._greenlets: list[gevent.Greenlet] = []
        self._read_g: gevent.Greenlet | None = None

    # -- media in -------------------------------------------------------------------------
    def push(self, read: np.ndarray, write: np.ndarray | None) -> None:
        """One 20 ms tick of the channel: read = far-end audio, write = what the switch sends to it."""
        if self.closed or self.paused:
            return
        if self.mix in ("stereo", "mixed") and write is None:
            return  # a parked, silent leg: no frames at all (capture af_stereo16k_parked)
        if len(self._out) + len(self._audio) * self.wire_bytes >= self.backlog_limit:
            self.frames_dropped += 1
            if self.connected and not self.overrun:
                self.overrun = True
                log.info(
                    "call %s: audio fork to %s:%s is not reading: dropping audio (buffer overrun)",
                    self.call_id,
                    self.target.host,
                    self.target.port,
                )
                self.emit("mod_audio_fork::buffer_overrun", None)
            return
        self._audio.append(self._payload(read, write))
        self.frames_queued += 1

    def _payload(self, read: np.ndarray, write: np.ndarray | None) -> bytes:
        """The L16 little-endian bytes of one frame for this fork's mix and rate (int16 is LE here)."""
        r = read
        if self.mix == "mono":
            if self.rate == 8000:
                return r.tobytes() if _LITTLE else r.astype("<i2").tobytes()
            if self.rate == 16000:
                up = audio.upsample_16k(r, self._last_read)
                self._last_read = int(r[-1])
                return up.astype("<i2", copy=False).tobytes()
            return r.astype("<i2", copy=False).tobytes()
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
            return r16.astype("<i2", copy=False).tobytes()
        if self.mix == "stereo":
            out = np.empty(len(r) * 2, dtype=np.int16)
            out[0::2], out[1::2] = r, w
            return out.astype("<i2", copy=False).tobytes()
        return r.astype("<i2", copy=False).tobytes()

    def flush(self) -> None:
        """Encode pending audio and write as much of the backlog as the socket takes now, without waiting."""
        flush_all((self,))

    def _write_pending(self) -> None:
        if not self._out or self._fd < 0 or self.closed:
            return
        self._write_now()

    def _write_direct(self, chunk: memoryview) -> None:
        """Write fresh frames straight from the shared buffer when nothing is queued before them."""
        try:
            n = os.write(self._fd, chunk)  # the fd is non-blocking (a gevent socket)
        except BlockingIOError:
            n = 0
        except OSError as exc:  # reset / broken pipe: the read loop reports the drop
            log.info("call %s: audio fork send failed: %s", self.call_id, exc)
            return
        if n < len(chunk):
            self._out += chunk[n:]

    def _write_now(self) -> None:
        try:
            n = os.write(self._fd, self._out)  # the fd is non-blocking (a gevent socket)
        except BlockingIOError:
            return
        except OSError as exc:  # reset / broken pipe: the read loop reports the drop
            log.info("call %s: audio fork send failed: %s", self.call_id, exc)
            self._out.clear()
            return
        if n == len(self._out):
            self._out.clear()
        else:
            del self._out[:n]  # a partial write: the rest goes first next time

    def graceful_shutdown(self) -> None:
        """Stop audio and send one empty binary frame (the server may then send final results and close)."""
        if not self.closed:
            self.paused = True
            flush_all((self,))  # audio pushed before goes first
            self._out += encode_frame(2, b"")
            self._write_pending()

    def send_text(self, text: str) -> None:
        if not self.closed:
            flush_all((self,))  # audio pushed before goes first
            self._out += encode_frame(1, text.encode("utf-8"))
            self._write_pending()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._greenlets.append(gevent.spawn(self._run))

    def stop(self, final_text: str | None = None) -> None:
        """The final text (if any) and Close 1000 go after what is queued; audio stops now."""
        if self.closed:
            return
        flush_all((self,))  # audio pushed before goes first (not connected yet: kept for _run)
        if final_text:
            self._out += encode_frame(1, final_text.encode("utf-8"))
        self._out += encode_frame(8, struct.pack("!H", 1000))
        self.closed = True
        if self._sock is not None:
            self._greenlets.append(gevent.spawn(self._drain, self._sock))
        # not connected yet: _run sends the backlog (metadata, texts, Close) once it is

    def _drain(self, sock: socket.socket) -> None:
        """After stop: write the rest (final text, Close) within DRAIN_TIMEOUT_S, then half-close; a peer
        that has not closed its side DRAIN_TIMEOUT_S later is cut off (no half-open socket left behind)."""
        try:
            if self._out:
                sock.settimeout(DRAIN_TIMEOUT_S)
                sock.sendall(bytes(self._out))
        except OSError as exc:
            log.info("call %s: audio fork close not sent: %s", self.call_id, exc)
        finally:
            self._out.clear()
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if self._read_g is not None:
                self._read_g.join(DRAIN_TIMEOUT_S)
            if self._read_g is not None and not self._read_g.dead:
                log.info("call %s: audio fork peer did not close after Close; closing", self.call_id)
                self._read_g.kill(block=False)
                try:
                    sock.close()
                except OSError:
                    pass

    def _connect(self) -> socket.socket:
        t = self.target
        sock = gsocket.create_connection((t.host, t.port), timeout=CONNECT_TIMEOUT_S)
        # libwebsockets disables Nagle on its TCP sockets (lws_plat_set_socket_options): each frame goes now
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            self._out.clear()
            self.emit(
                "mod_audio_fork::connect_failed",
                json.dumps({"reason": "Unable to connect"}, separators=(",", ":")),
            )
            return
        self._sock = sock
        self.connected = True
        if self.metadata:  # the first frame, before any audio or text queued while connecting
            self._out[:0] = encode_frame(1, self.metadata.encode("utf-8"))
        self.emit("mod_audio_fork::connect", None)
        self._read_g = gevent.spawn(self._read_loop, sock)
        self._greenlets.append(self._read_g)
        if self.closed:  # stopped while connecting: send what was queued, Close last
            self._drain(sock)
            return
        self._fd = sock.fileno()
        self._write_pending()

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
            self._fd = -1
            if not self.closed:
                self.closed = self.dropped = True
                self._out.clear()
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
        self._fd = -1
        for g in self._greenlets:
            g.kill(block=False)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass



def flush_all(forks: Iterable[ForkSession]) -> None:
    """Mask every fork's pending audio in one go, then write each fork's backlog (never blocks).

    The frames of all forks with the same frame size are built as rows of one
    numpy array (header, fresh random key, masked PCM), so the Python work per
    fork is one slice and one write, whatever the number of frames.
    """
    groups: dict[int, list[ForkSession]] = {}
    for fork in forks:
        if fork._audio:
            groups.setdefault(fork.frame_bytes, []).append(fork)
    fresh: dict[ForkSession, memoryview] = {}
    for size, group in groups.items():
        payloads = [p for fork in group for p in fork._audio]
        head = group[0].audio_head
        rows = wire_frames(head, payloads, size)
        row = len(head) + 4 + size
        i = 0
        for fork in group:
            m = len(fork._audio)
            fork._audio = []
            fresh[fork] = rows[i * row : (i + m) * row]
            i += m
    for fork in forks:
        chunk = fresh.get(fork)
        if fork._fd < 0 or fork.closed:
            if chunk is not None:
                fork._out += chunk  # not connected yet: sent after the metadata once it is
            continue
        if chunk is not None and not fork._out:
            fork._write_direct(chunk)
        else:
            if chunk is not None:
                fork._out += chunk
            if fork._out:
                fork._write_now()


def wire_frames(head: bytes, payloads: list[bytes], size: int) -> memoryview:
    """Masked binary frames (`head` + a fresh os.urandom key + masked payload) for same-size payloads."""
    k = len(payloads)
    keys = np.frombuffer(os.urandom(4 * k), dtype=np.uint8).reshape(k, 4)
    hl = len(head)
    rows = np.empty((k, hl + 4 + size), dtype=np.uint8)
    rows[:, :hl] = np.frombuffer(head, dtype=np.uint8)
    rows[:, hl : hl + 4] = keys
    words = np.frombuffer(b"".join(payloads), dtype="<u4").reshape(k, size // 4)
    rows[:, hl + 4 :] = (words ^ keys.view("<u4")).view(np.uint8)
    return memoryview(rows.tobytes())
