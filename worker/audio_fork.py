"""The audio-fork WebSocket endpoint: FreeSWITCH's mod_audio_fork connects here (it is the client).

    server = ForkServer("0.0.0.0:8090", public_host="worker").start()
    stream = server.expect(call_id)                 # BEFORE uuid_audio_fork ... start
    leg.start_fork(server.url_for(call_id), 8000, {"callId": call_id})
    while (pcm := stream.get(timeout=5)) is not None:   # L16 LE bytes, any size; None = fork closed
        ...
    server.release(call_id)

A small RFC 6455 server on gevent's StreamServer: one greenlet per fork, no
thread, a few KiB per connection, so hundreds of concurrent 20 ms streams stay
cheap.  With `hub_reads=True` (the worker) that greenlet only does the
handshake: the audio hub reads every fork in its rounds (`stream.poll()`, one
non-blocking read per call and round, then `stream.take()`), so a worker pays
no greenlet wake-up per 20 ms frame.  The upgrade selects subprotocol `audio.drachtio.org` when offered (FS
also works without one, freeswitch.md §4.3).  The first TEXT frame is the
metadata (JSON); binary frames are passed on as they come (the consumer
re-chunks to 20 ms); later TEXT frames go to `stream.texts`.  A connection for
a call id nobody expects is accepted and closed at once with 1008 (policy).
The WebSocket framing itself (`WsFrameParser`, `encode_frame`) is pure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import struct
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from gevent.pool import Pool
from gevent.server import StreamServer

from worker.config import AUDIO_FORK_PATH

log = logging.getLogger(__name__)

SUBPROTOCOL = "audio.drachtio.org"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# --- tunables -----------------------------------------------------------------
HANDSHAKE_TIMEOUT_S = 10.0  # seconds for the client to send its upgrade request
IDLE_TIMEOUT_S = 120.0  # seconds without any frame before a fork is considered dead
DRAIN_TIMEOUT_S = 5.0  # seconds to wait for the peer's close after we sent ours
MAX_REQUEST_BYTES = 16 * 1024  # upgrade request size limit
MAX_MESSAGE_BYTES = 1 << 20  # one reassembled message (FS sends 320-1280 byte frames)
STREAM_MAX_FRAMES = 1500  # buffered binary frames per fork (30 s of 20 ms audio) before backpressure
BACKPRESSURE_S = 2.0  # the reader waits this long for a slow consumer, then drops the oldest frame
MAX_CONNECTIONS = 2000  # concurrent WebSocket connections per server
LISTEN_BACKLOG = 1024  # pending connections: hundreds of forks start at once (gevent's default is 128)
READ_CHUNK = 65536
YIELD_EVERY_RECVS = 8  # the reader yields to the hub after this many recvs that did not wait
PACE_MIN_S = 0.002  # shortest pause between reads of a paced connection (see ForkServer read_pace_s)
FRAME_S = 0.02  # one mod_audio_fork binary message: 20 ms of audio

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_POLICY, CLOSE_TOO_BIG = 1000, 1002, 1008, 1009

_CALL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class WsProtocolError(Exception):
    def __init__(self, message: str, code: int = CLOSE_PROTOCOL) -> None:
        super().__init__(message)
        self.code = code


# --- pure framing ----------------------------------------------------------------
class WsFrame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes


def _unmask(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class WsFrameParser:
    """Client-to-server frames (must be masked): `feed(bytes)`, then `next_frame()` until None."""

    def __init__(self, max_payload: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first unparsed frame in _buf (parsed bytes are dropped on feed)
        self._max = max_payload

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> bytes:
        """The bytes not parsed yet."""
        return bytes(self._buf[self._pos :])

    def next_frame(self) -> WsFrame | None:
        buf = self._buf
        start = self._pos
        if len(buf) - start < 2:
            return None
        b0, b1 = buf[start], buf[start + 1]
        if b0 & 0x70:
            raise WsProtocolError("reserved bits set (no extension was negotiated)")
        opcode = b0 & 0x0F
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise WsProtocolError(f"unknown opcode {opcode:#x}")
        if not b1 & 0x80:
            raise WsProtocolError("client frames must be masked")
        length = b1 & 0x7F
        pos = start + 2
        if length == 126:
            if len(buf) < start + 4:
                return None
            (length,) = struct.unpack_from("!H", buf, start + 2)
            pos = start + 4
        elif length == 127:
            if len(buf) < start + 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, start + 2)
            pos = start + 10
        if opcode >= OP_CLOSE and (length > 125 or not b0 & 0x80):
            raise WsProtocolError("control frames must be short and not fragmented")
        if length > self._max:
            raise WsProtocolError(f"frame of {length} bytes is too big", CLOSE_TOO_BIG)
        end = pos + 4 + length
        if len(buf) < end:
            return None
        payload = _unmask(bytes(buf[pos : pos + 4]), bytes(buf[pos + 4 : end]))
        self._pos = end
        return WsFrame(bool(b0 & 0x80), opcode, payload)

    def binary_run(self) -> list[bytes]:
        """Payloads of the complete final masked BINARY frames at the head of the buffer (mod_audio_fork's
        20 ms frames), parsed without building frames; stops at anything else (next_frame() handles
        that, errors included)."""
        buf, pos, end_buf = self._buf, self._pos, len(self._buf)
        out: list[bytes] = []
        while end_buf - pos >= 6:
            b1 = buf[pos + 1]
            if buf[pos] != 0x82 or b1 < 0x80:  # FIN + BINARY, masked
                break
            length = b1 & 0x7F
            if length < 126:
                hdr = pos + 2
            elif length == 126 and end_buf - pos >= 8:
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = pos + 4
            else:
                break
            end = hdr + 4 + length
            if end > end_buf or length > self._max:
                break
            out.append(_unmask(bytes(buf[hdr : hdr + 4]), bytes(buf[hdr + 4 : end])))
            pos = end
        self._pos = pos
        return out

    def frames(self) -> Iterator[WsFrame]:
        while (frame := self.next_frame()) is not None:
            yield frame


def encode_frame(opcode: int, payload: bytes = b"", mask: bytes | None = None) -> bytes:
    """One FIN frame; servers send unmasked, clients (tests) pass a 4-byte mask."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask is not None:
        return bytes(head) + mask + _unmask(mask, payload)
    return bytes(head) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[:120]


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class UpgradeRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def protocols(self) -> list[str]:
        raw = self.headers.get("sec-websocket-protocol", "")
        return [p.strip() for p in raw.split(",") if p.strip()]


def parse_upgrade(data: bytes) -> UpgradeRequest:
    """Parse and check an HTTP/1.1 WebSocket upgrade request (the bytes before the blank line)."""
    lines = data.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise WsProtocolError(f"not an HTTP request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise WsProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    req = UpgradeRequest(parts[0], parts[1], headers)
    if req.method != "GET":
        raise WsProtocolError(f"method {req.method} is not GET")
    if (
        headers.get("upgrade", "").lower() != "websocket"
        or "upgrade" not in headers.get("connection", "").lower()
    ):
        raise WsProtocolError("not a WebSocket upgrade")
    if headers.get("sec-websocket-version") != "13":
        raise WsProtocolError("Sec-WebSocket-Version must be 13")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise WsProtocolError("bad Sec-WebSocket-Key") from None
    return req


def upgrade_response(req: UpgradeRequest) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(req.headers['sec-websocket-key'])}",
    ]
    if SUBPROTOCOL in req.protocols:
        lines.append(f"Sec-WebSocket-Protocol: {SUBPROTOCOL}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _http_error(status: str, message: str) -> bytes:
    body = message.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


# --- streams and the server ------------------------------------------------------------
class ForkStream:
    """The audio of one fork.  `get()` -> bytes, None once the fork closed; TimeoutError on timeout.

    `get_batch()` takes many frames in one wake-up (the audio pump's path: one greenlet switch and
    one timer per detector feed instead of one per 20 ms frame).  One consumer per stream."""

    def __init__(self, call_id: str, max_frames: int = STREAM_MAX_FRAMES) -> None:
        self.call_id = call_id
        self.metadata: dict[str, Any] | None = None
        self.texts: gevent.queue.Queue[str] = gevent.queue.Queue()
        self.connected = gevent.event.Event()
        self.ended = gevent.event.Event()
        self.close_code: int | None = None
        self.frames_received = 0
        self.bytes_received = 0
        self.dropped = 0
        self.last_arrival = 0.0  # perf_counter when the oldest frame of the last get/get_batch arrived
        self._items: deque[tuple[bytes, float]] = deque()  # (frame, perf_counter at arrival)
        self._bytes = 0  # bytes in _items
        self._closed = False  # the end marker is "queued" after the items
        self._want = 1  # bytes the waiting consumer needs before it is woken
        self._ready = gevent.event.Event()  # set by the reader once _want bytes (or the end) are in
        self._waiting = False  # a consumer waits on _ready
        self._max = max_frames
        self._space = gevent.event.Event()  # set by get() when the queue has room again
        self._stalled = False  # the consumer let a backpressure wait time out
        self._conn: _Conn | None = None
        self._attached = False
        self._notify: gevent.event.Event | None = None  # see notify_when
        self._reader: _Reader | None = None  # hub-read mode: the connection poll() reads
        self._notify_want = 0

    def __repr__(self) -> str:
        return f"ForkStream({self.call_id}, frames={self.frames_received}, ended={self.ended.is_set()})"

    def _wait(self, want: int, timeout: float | None) -> bool:
        """Until `want` bytes are buffered or the stream closed; False on timeout."""
        if self._bytes >= want or self._closed:
            return True
        self._want = want
        self._waiting = True
        self._ready.clear()
        try:
            return self._ready.wait(timeout)
        finally:
            self._want = 1
            self._waiting = False

    def _taken(self) -> None:
        if len(self._items) < self._max:
            self._stalled = False
            self._space.set()

    def get(self, timeout: float | None = None) -> bytes | None:
        if not self._items and not self._closed and not self._wait(1, timeout):
            raise TimeoutError(f"fork {self.call_id}: no audio within {timeout}s")
        if not self._items:
            return None  # ended (and stays ended for later calls)
        data, self.last_arrival = self._items.popleft()
        self._bytes -= len(data)
        self._taken()
        return data

    @property
    def buffered(self) -> int:
        """Bytes of audio waiting for the consumer."""
        return self._bytes

    def get_batch(self, want: int, limit: int, wait: float) -> tuple[bytes, bool]:
        """(audio, fork closed): blocks for the first frame, then up to `wait` seconds more until
        `want` bytes are buffered; takes whole frames, at most `limit` bytes (at least one frame).
        `last_arrival` is then the arrival time of the batch's first frame."""
        if not self._items and not self._closed:
            self._wait(1, None)
        if self._bytes < want and not self._closed:
            self._wait(want, wait)
        data, _, closed = self.take(limit)
        return data, closed or not data

    def take(self, limit: int) -> tuple[bytes, float, bool]:
        """Never blocks (the audio hub's path): (queued frames, at most `limit` bytes but at least one
        frame, or b""; perf_counter when the first of them came off the socket; the fork closed
        and nothing is left)."""
        items = self._items
        if not items:
            return b"", self.last_arrival, self._closed
        data, self.last_arrival = items.popleft()
        parts = [data]
        size = len(data)
        while items and size + len(items[0][0]) <= limit:
            data = items.popleft()[0]
            parts.append(data)
            size += len(data)
        self._bytes -= size
        self._taken()
        audio = parts[0] if len(parts) == 1 else b"".join(parts)
        return audio, self.last_arrival, self._closed and not items

    def poll(self) -> None:
        """Hub-read mode: read whatever arrived on the fork's socket now, without waiting (the hub
        calls this before `take`).  Nothing to do for a stream its connection's greenlet reads."""
        reader = self._reader
        if reader is not None:
            reader.poll()

    def notify_when(self, event: gevent.event.Event, want: int) -> None:
        """Set `event` whenever `want` bytes or more are waiting, or the fork closed (the audio hub
        starts a round early when a call's audio piles up faster than real time)."""
        self._notify = event
        self._notify_want = max(1, want)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self.connected.wait(timeout)

    def send_text(self, message: str | Mapping[str, Any]) -> bool:
        """A TEXT frame to FreeSWITCH (JSON for mod_audio_fork, §4.4); False if not connected."""
        text = message if isinstance(message, str) else json.dumps(dict(message), separators=(",", ":"))
        conn = self._conn
        return conn is not None and conn.send(encode_frame(OP_TEXT, text.encode()))

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Close the WebSocket (FS then fires mod_audio_fork::disconnect) and end the stream."""
        conn = self._conn
        if conn is not None:
            conn.close(code)
        self._end(code)

    # -- fed by the connection --------------------------------------------------
    def _put(self, data: bytes, arrival: float) -> None:
        if self._closed:
            return
        self.frames_received += 1
        self.bytes_received += len(data)
        items = self._items
        if len(items) >= self._max and not self._stalled and self._reader is None:
            # (in hub-read mode the hub itself is the reader: it never waits, it reads less instead)
            # Backpressure first: the reader stops reading, TCP pushes back on the sender.
            self._space.clear()
            if not self._space.wait(BACKPRESSURE_S):
                self._stalled = True  # a stuck consumer: drop from now on, without waiting each time
        if len(items) >= self._max:
            old = items.popleft()[0]
            self._bytes -= len(old)
            self.dropped += 1
            if self.dropped in (1, 100, 1000) or self.dropped % 10000 == 0:
                log.warning("call %s: audio consumer too slow, %s frames dropped", self.call_id, self.dropped)
        items.append((data, arrival))
        self._bytes += len(data)
        if self._waiting and self._bytes >= self._want:
            self._ready.set()
        notify = self._notify
        if notify is not None and self._reader is None and self._bytes >= self._notify_want:
            if not notify.is_set():
                notify.set()

    def _end(self, code: int | None) -> None:
        if not self.ended.is_set():
            self.close_code = code
            self.ended.set()
            self._closed = True
            self._ready.set()
            if self._notify is not None:
                self._notify.set()


class _Conn:
    """One accepted socket: serialized writes, close bookkeeping."""

    def __init__(self, sock: Any, call_id: str) -> None:
        self.sock = sock
        self.call_id = call_id
        self._lock = gevent.lock.Semaphore()
        self.close_sent = False

    def send(self, data: bytes) -> bool:
        with self._lock:
            if self.close_sent:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def close(self, code: int, reason: str = "") -> None:
        with self._lock:
            if self.close_sent:
                return
            self.close_sent = True
            try:
                self.sock.sendall(encode_frame(OP_CLOSE, close_payload(code, reason)))
            except OSError:
                pass


class _Reader:
    """One connection's WebSocket traffic -> its stream: parsing, message reassembly, ping and close.

    Fed by the connection's own greenlet (`ForkServer._pump`) or, in hub-read mode, by the audio
    hub's rounds (`poll`: one non-blocking read per round, no greenlet wake-up per frame)."""

    def __init__(self, sock: Any, conn: _Conn, stream: ForkStream, rest: bytes) -> None:
        self.sock = sock
        self.conn = conn
        self.stream = stream
        self.parser = WsFrameParser()
        self.parser.feed(rest)
        self.arrival = time.perf_counter()  # when the bytes being parsed came off the socket (lag)
        self.last_read = self.arrival  # when the socket was last found drained (hub-read mode)
        self.last_data = time.monotonic()  # idle timeout
        self.code: int | None = None  # close code once over
        self.over = False
        self._op: int | None = None  # opcode of the message being reassembled
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes, arrival: float) -> None:
        self.arrival = arrival
        self.parser.feed(data)

    def handle(self) -> bool:
        """Every complete frame buffered -> the stream; True once the connection is over (`code`)."""
        stream, conn, parser = self.stream, self.conn, self.parser
        try:
            while True:
                if self._op is None:  # the usual traffic first: whole binary frames, in a tight loop
                    put, arrival = stream._put, self.arrival
                    for payload in parser.binary_run():
                        if payload:  # an empty frame is mod_audio_fork's graceful-shutdown marker
                            put(payload, arrival)
                frame = parser.next_frame()
                if frame is None:
                    break
                fin, op, payload = frame
                if op == OP_BINARY and fin and self._op is None:  # the usual case: one 20 ms frame
                    if payload:  # an empty frame is mod_audio_fork's graceful-shutdown marker
                        stream._put(payload, self.arrival)
                    continue
                if op == OP_PING:
                    conn.send(encode_frame(OP_PONG, payload))
                    continue
                if op == OP_PONG:
                    continue
                if op == OP_CLOSE:
                    self.code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    conn.close(CLOSE_NORMAL)  # echo the close (RFC 6455 §5.5.1)
                    self.over = True
                    return True
                if op == OP_CONT:
                    if self._op is None:
                        raise WsProtocolError("continuation frame without a message")
                else:
                    if self._op is not None:
                        raise WsProtocolError("new message inside a fragmented one")
                    self._op = op
                self._parts.append(payload)
                self._size += len(payload)
                if self._size > MAX_MESSAGE_BYTES:
                    raise WsProtocolError("message too big", CLOSE_TOO_BIG)
                if not fin:
                    continue
                parts = self._parts
                ForkServer._deliver(stream, self._op, parts[0] if len(parts) == 1 else b"".join(parts),
                                    self.arrival)
                self._op, self._parts, self._size = None, [], 0
        except WsProtocolError as exc:
            log.warning("call %s: audio fork protocol error: %s", stream.call_id, exc)
            conn.close(exc.code, str(exc)[:100])
            self.code = exc.code
            self.over = True
            return True
        return False

    def poll(self) -> None:
        """Hub-read mode: read what the socket holds without waiting, pass it on; end the stream when
        the connection is over (close, EOF, protocol error, idle)."""
        stream = self.stream
        if self.over or stream.ended.is_set():
            return
        if len(stream._items) >= stream._max // 2:
            return  # the consumer is behind: leave the bytes in the socket, TCP pushes back
        now = time.perf_counter()
        try:
            data = os.read(self.sock.fileno(), READ_CHUNK)  # the fd is non-blocking (gevent)
        except BlockingIOError:
            self.last_read = now
            if time.monotonic() - self.last_data > IDLE_TIMEOUT_S:
                log.warning("call %s: audio fork idle for %ss, closing", stream.call_id, IDLE_TIMEOUT_S)
                self.conn.close(CLOSE_POLICY, "idle")
                self._finish(None)
            return
        except OSError:
            self._finish(None)
            return
        if not data:
            self._finish(None)
            return
        self.last_data = time.monotonic()
        # lag clock: these bytes arrived after the socket was last found drained
        self.feed(data, self.last_read)
        self.last_read = now if len(data) < READ_CHUNK else self.last_read
        if self.handle():
            self._finish(self.code)

    def _finish(self, code: int | None) -> None:
        self.over = True
        self.code = code
        self.stream._end(code)


class ForkServer:
    """The endpoint.  See the module docstring and CONTRACTS.md "Audio fork endpoint"."""

    def __init__(
        self,
        bind: str = "127.0.0.1:0",
        public_host: str | None = None,
        path: str = AUDIO_FORK_PATH,
        max_connections: int = MAX_CONNECTIONS,
        max_frames: int = STREAM_MAX_FRAMES,
        read_pace_s: float = 0.0,
        hub_reads: bool = False,
    ) -> None:
        self.max_frames = max_frames
        # True: the audio hub reads every connection in its rounds (ForkStream.poll), no greenlet per
        # read; a stream nobody polls is then never read.  False: each connection's greenlet reads.
        self.hub_reads = hub_reads
        # > 0: each connection reads about every read_pace_s of audio (several frames per recv and one
        # wake-up per read, not one per 20 ms frame); the pause follows the sender's rate, so a switch
        # running faster than real time is read as often as needed.  0: read as soon as readable.
        if read_pace_s < 0:
            raise ValueError(f"read_pace_s must be >= 0, got {read_pace_s}")
        self.read_pace_s = read_pace_s
        host, sep, port = bind.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"audio fork bind must be host:port, got {bind!r}")
        self._bind = (host or "0.0.0.0", int(port))
        self.public_host = public_host or (host if host not in ("", "0.0.0.0") else "127.0.0.1")
        self.path = "/" + path.strip("/")
        self._streams: dict[str, ForkStream] = {}
        self._server = StreamServer(self._bind, self._handle, spawn=Pool(max_connections),
                                    backlog=LISTEN_BACKLOG)

    @classmethod
    def from_settings(cls, settings: Any, read_pace_s: float = 0.0, hub_reads: bool = False) -> ForkServer:
        return cls(settings.audio_fork_bind, settings.audio_fork_public_host, read_pace_s=read_pace_s,
                   hub_reads=hub_reads)

    def start(self) -> ForkServer:
        self._server.start()
        log.info("audio fork endpoint listening on %s:%s", self._bind[0], self.port)
        return self

    def stop(self) -> None:
        for call_id in list(self._streams):
            self.release(call_id)
        self._server.stop(timeout=1)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def url_for(self, call_id: str) -> str:
        _check_call_id(call_id)
        return f"ws://{self.public_host}:{self.port}{self.path}/{call_id}"

    def expect(self, call_id: str) -> ForkStream:
        """The stream the next fork for `call_id` feeds (a new one if the previous fork ended)."""
        _check_call_id(call_id)
        stream = self._streams.get(call_id)
        if stream is None or stream.ended.is_set():
            stream = ForkStream(call_id, self.max_frames)
            self._streams[call_id] = stream
        return stream

    def release(self, call_id: str) -> None:
        stream = self._streams.pop(call_id, None)
        if stream is not None:
            stream.close()

    @property
    def active(self) -> int:
        return sum(1 for s in self._streams.values() if s.connected.is_set() and not s.ended.is_set())

    # -- one connection -----------------------------------------------------------
    def _handle(self, sock: Any, address: Any) -> None:
        try:
            self._serve(sock)
        except Exception:  # noqa: BLE001 - one broken fork must not take the server down
            log.exception("audio fork connection from %s failed", address)
        finally:
            sock.close()

    def _read_request(self, sock: Any) -> tuple[bytes, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_REQUEST_BYTES:
                sock.sendall(_http_error("431 Request Header Fields Too Large", "request too large"))
                return None
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _serve(self, sock: Any) -> None:
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            got = self._read_request(sock)
        except OSError:
            return
        if got is None:
            return
        head, rest = got
        try:
            req = parse_upgrade(head)
        except WsProtocolError as exc:
            sock.sendall(_http_error("400 Bad Request", str(exc)))
            return
        prefix = self.path + "/"
        if not req.path.startswith(prefix):
            sock.sendall(_http_error("404 Not Found", f"audio forks connect to {prefix}<call_id>"))
            return
        call_id = unquote(req.path[len(prefix) :])
        sock.sendall(upgrade_response(req))
        conn = _Conn(sock, call_id)
        stream = self._streams.get(call_id)
        if stream is None or stream._attached or stream.ended.is_set():
            log.warning("call %s: unexpected audio fork connection refused (1008)", call_id)
            conn.close(CLOSE_POLICY, "unknown call")
            self._drain(sock, rest)
            return
        stream._attached = True
        stream._conn = conn
        stream.connected.set()
        log.info("call %s: audio fork connected (protocols %s)", call_id, req.protocols)
        reader = _Reader(sock, conn, stream, rest)
        code: int | None = None
        try:
            if self.hub_reads:
                code = self._await_hub(sock, conn, stream, reader)
            else:
                code = self._pump(sock, conn, stream, reader)
        finally:
            stream._conn = None
            stream._reader = None
            stream._end(code)
            log.info(
                "call %s: audio fork ended (code %s, %s frames, %s dropped)",
                call_id,
                code,
                stream.frames_received,
                stream.dropped,
            )

    def _await_hub(self, sock: Any, conn: _Conn, stream: ForkStream, reader: _Reader) -> int | None:
        """Hub-read mode: the audio hub reads this socket in its rounds (ForkStream.poll); this
        greenlet only waits for the end and, when we closed first, for the peer's close."""
        if reader.handle():  # frames that came with the upgrade request
            return reader.code
        stream._reader = reader
        stream.ended.wait()
        if reader.over:
            return reader.code
        if conn.close_sent:  # we closed (release): wait for the peer's close, briefly
            self._drain(sock, reader.parser.buffered)
        return stream.close_code or CLOSE_NORMAL

    def _pump(self, sock: Any, conn: _Conn, stream: ForkStream, reader: _Reader) -> int | None:
        sock.settimeout(IDLE_TIMEOUT_S)
        busy = 0  # recvs in a row that found data waiting (they never yield to the hub)
        pace_max = self.read_pace_s
        pace = pace_max  # the pause before the next read (paced connections)
        target = max(1.0, pace_max / FRAME_S)  # messages one paced read should find
        seen = 0  # stream.frames_received at the last read
        data = b""
        while True:
            if reader.handle():
                return reader.code
            if conn.close_sent:  # we closed (release): wait for the peer's close, briefly
                self._drain(sock, reader.parser.buffered)
                return stream.close_code or CLOSE_NORMAL
            read_from = time.perf_counter()  # the socket was just drained: later bytes came after this
            if pace_max and len(data) < READ_CHUNK:
                got = stream.frames_received - seen
                seen = stream.frames_received
                if got:  # the last read brought audio: wait until about `target` messages are in
                    pace = min(pace_max, max(PACE_MIN_S, pace * target / got))
                    gevent.sleep(pace)
            try:
                data = sock.recv(READ_CHUNK)
            except TimeoutError:
                log.warning("call %s: audio fork idle for %ss, closing", stream.call_id, IDLE_TIMEOUT_S)
                conn.close(CLOSE_POLICY, "idle")
                return None
            except OSError:
                return None
            if not data:
                return None
            # lag clock: a paced read finds bytes that waited in the socket since its last read
            reader.feed(data, read_from if pace_max else time.perf_counter())
            # A recv that finds data never yields: a fast sender must not starve the consumers.  At
            # real time a recv usually waits (and so yields), so this extra switch is rarely needed.
            busy += 1
            if busy >= YIELD_EVERY_RECVS or len(data) >= READ_CHUNK:
                busy = 0
                gevent.sleep(0)

    @staticmethod
    def _deliver(stream: ForkStream, opcode: int | None, payload: bytes, arrival: float) -> None:
        if opcode == OP_BINARY:
            if payload:  # an empty frame is mod_audio_fork's graceful-shutdown marker
                stream._put(payload, arrival)
            return
        text = payload.decode("utf-8", errors="replace")
        if stream.metadata is None and stream.frames_received == 0 and stream.texts.empty():
            try:
                meta = json.loads(text)
            except ValueError:
                meta = None
            if isinstance(meta, dict):
                stream.metadata = meta
                return
            log.warning("call %s: audio fork metadata is not a JSON object: %r", stream.call_id, text[:80])
        stream.texts.put(text)

    @staticmethod
    def _drain(sock: Any, rest: bytes) -> None:
        """After our close: discard frames until the peer's close or EOF (bounded in time)."""
        parser = WsFrameParser()
        parser.feed(rest)
        sock.settimeout(DRAIN_TIMEOUT_S)
        try:
            while True:
                for frame in parser.frames():
                    if frame.opcode == OP_CLOSE:
                        return
                data = sock.recv(READ_CHUNK)
                if not data:
                    return
                parser.feed(data)
        except (OSError, WsProtocolError):
            return


def _check_call_id(call_id: str) -> None:
    if not isinstance(call_id, str) or not _CALL_ID_RE.match(call_id):
        raise ValueError(f"call id must be 1-128 letters, digits, '-', '_' or '.', got {call_id!r}")
