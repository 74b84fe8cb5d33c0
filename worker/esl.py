"""The ESL client: one connection per FreeSWITCH, timeouts, reconnect, per-channel routing.

Built on greenswitch 0.0.19's `InboundESL` (freeswitch.md §5), fixing what §5.3
lists: its line-based reader (mis-parsed bodies, dies on `event json`) is
replaced by `worker.esl_protocol.EslParser`; `send()` gets a timeout and
`sendall`; every pending command fails with `EslDisconnected` the moment the
socket dies; greenswitch objects are single use, so each reconnect builds a
new `_Connection`.  Replies are still matched to commands in FIFO order, as
greenswitch does (FS answers every command exactly once, in order).

Events are routed by `Unique-ID` to the `EventStream` registered with
`events_for(uuid)` (register BEFORE originating: with origination_uuid the
very first event already carries it).  `BACKGROUND_JOB` events wake the
`bgapi()` call whose own `Job-UUID` they carry.  Unrelated legs are ignored.

On a drop every stream gets a `HS_ESL_DISCONNECTED` marker event, every pending
call fails at once, `on_disconnect` callbacks run; the client reconnects with
backoff, re-subscribes, puts `HS_ESL_RECONNECTED` in every stream and runs the
`on_reconnect` callbacks (the job layer re-checks its legs with uuid_exists).
"""

from __future__ import annotations

import logging
import random
import socket as _stdsocket
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
from gevent.pool import Group
from greenswitch.esl import InboundESL

from worker.errors import CommandFailed, EslAuthError, EslDisconnected, EslError, EslTimeout
from worker.esl_protocol import (
    API_RESPONSE,
    AUTH_REQUEST,
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    LOG_DATA,
    RUDE_REJECTION,
    EslEvent,
    EslParser,
    EslProtocolError,
    Frame,
    auth_cmd,
    command_bytes,
    decode_event,
    event_subscribe_cmd,
    synthetic_event,
)

log = logging.getLogger(__name__)

# Marker events put into every stream (Event-Name; never sent by FreeSWITCH).
DISCONNECTED = "HS_ESL_DISCONNECTED"
RECONNECTED = "HS_ESL_RECONNECTED"

# What a worker subscribes to (freeswitch.md §1.6: CUSTOM subclasses last).  "ALL" also works.
DEFAULT_EVENTS: tuple[str, ...] = (
    "CHANNEL_CREATE",
    "CHANNEL_UUID",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_DESTROY",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_PARK",
    "CHANNEL_EXECUTE_COMPLETE",
    "DTMF",
    "PLAYBACK_START",
    "PLAYBACK_STOP",
    "RECORD_START",
    "RECORD_STOP",
    "MEDIA_BUG_START",
    "MEDIA_BUG_STOP",
    "BACKGROUND_JOB",
    "HEARTBEAT",
    "mod_audio_fork::connect",
    "mod_audio_fork::connect_failed",
    "mod_audio_fork::disconnect",
    "mod_audio_fork::buffer_overrun",
    "mod_audio_fork::error",
    "mod_audio_fork::json",
    "sofia::register",
    "sofia::unregister",
    "sofia::expire",
    "sofia::gateway_state",
)

READ_CHUNK = 65536  # bytes per recv()
STOP_TIMEOUT_S = 1.0  # how long close() waits for `exit` to be answered and greenlets to end
STREAM_MAX_EVENTS = 2000  # per-uuid queue bound; a leg that nobody reads drops its oldest events
KEEPALIVE_IDLE_S = 10  # TCP keepalive: first probe after this many idle seconds,
KEEPALIVE_INTERVAL_S = 5  # then one every this many seconds,
KEEPALIVE_PROBES = 3  # and the connection is dead after this many unanswered probes (~25 s)


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays in seconds: initial, times factor after each failure, capped, +/- jitter."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1 + random.uniform(-self.jitter, self.jitter))
            delay = min(delay * self.factor, self.maximum)


def _enable_keepalive(sock: Any) -> None:
    """Let the kernel notice a switch that vanished without closing (power loss, partition)."""
    sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        option = getattr(_stdsocket, name, None)
        if option is not None:  # Linux; other systems keep their defaults
            sock.setsockopt(_stdsocket.IPPROTO_TCP, option, value)


def _describe(command: str) -> str:
    """A command for logs: the verb (and API name) only, never arguments like the password."""
    words = command.split(" ", 2)
    if words[0] in ("api", "bgapi") and len(words) > 1:
        return f"{words[0]} {words[1]}"
    return words[0]


class EventStream:
    """The events of one channel, in order.  `get()` returns None once the stream is released."""

    def __init__(self, uuid: str, maxsize: int = STREAM_MAX_EVENTS) -> None:
        self.uuid = uuid
        self._queue: gevent.queue.Queue[EslEvent | None] = gevent.queue.Queue()
        self._maxsize = maxsize
        self.dropped = 0
        self.closed = False

    def put(self, event: EslEvent) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._maxsize:
            try:
                self._queue.get_nowait()
                self.dropped += 1
            except gevent.queue.Empty:
                pass
        self._queue.put_nowait(event)

    def get(self, timeout: float | None = None) -> EslEvent | None:
        """The next event; None when released; raises EslTimeout after `timeout` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except gevent.queue.Empty:
            raise EslTimeout(f"{self.uuid}: no event within {timeout}s") from None
        if item is None:
            self._queue.put_nowait(None)  # keep later get() calls returning None
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    def __iter__(self) -> Iterator[EslEvent]:
        while True:
            item = self.get()
            if item is None:
                return
            yield item


class _Connection(InboundESL):
    """One authenticated TCP connection: greenswitch's InboundESL with its I/O paths replaced."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        timeout: float,
        group: Group,
        on_event: Callable[[EslEvent], None],
        on_closed: Callable[[_Connection, str], None],
    ) -> None:
        super().__init__(host, port, password, timeout)
        self.label = f"{host}:{port}"
        self._group = group
        self._on_event = on_event
        self._on_closed = on_closed
        self._parser = EslParser()
        self._write_lock = gevent.lock.Semaphore()
        self._done = False
        self._rejected = False
        self._notice = ""
        self.sock: Any = None
        self._commands_sent: list[gevent.event.AsyncResult] = []

    # -- lifecycle ------------------------------------------------------------
    def connect(self) -> None:
        try:
            self.sock = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            raise EslTimeout(f"ESL {self.label}: TCP connect timed out after {self.timeout}s") from None
        except OSError as exc:
            raise EslDisconnected(f"ESL {self.label}: cannot connect: {exc}") from None
        self.sock.settimeout(None)
        self.sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        _enable_keepalive(self.sock)
        self.connected = True
        self._receive_events_greenlet = self._group.spawn(self.receive_events)
        if not self._auth_request_event.wait(self.timeout):
            self.stop()
            raise EslTimeout(f"ESL {self.label}: no auth/request within {self.timeout}s")
        if self._rejected:
            self.stop()
            raise EslAuthError(
                f"ESL {self.label}: access denied by the event socket ACL (configure apply-inbound-acl)"
            )
        if not self.connected:
            raise EslDisconnected(f"ESL {self.label}: closed before authentication")
        self.authenticate()

    def authenticate(self) -> None:
        reply = self.send(auth_cmd(self.password), timeout=self.timeout)
        if reply.reply_text != "+OK accepted":
            self.stop()
            raise EslAuthError(
                f"ESL {self.label}: password rejected ({reply.reply_text or 'no reply'}); check ESL_PASSWORD"
            )

    def stop(self) -> None:  # greenswitch name; sends `exit`, closes, joins the reader
        if self.connected and not self._done and self._auth_request_event.is_set() and not self._rejected:
            try:
                self.send("exit", timeout=STOP_TIMEOUT_S)
            except EslError:
                pass
        self._teardown("closed by us")
        reader = self._receive_events_greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.join(timeout=STOP_TIMEOUT_S)

    # -- reading --------------------------------------------------------------
    def receive_events(self) -> None:
        reason = "connection closed by FreeSWITCH"
        try:
            while not self._done:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    break
                self._parser.feed(data)
                for frame in self._parser.frames():
                    self.handle_event(frame)
                gevent.sleep(0)  # let the woken callers run: recv() with data waiting never yields
        except EslProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.error("ESL %s: %s; dropping the connection", self.label, exc)
        except OSError as exc:
            reason = f"socket error: {exc}"
        finally:
            self._teardown(self._notice or reason)

    def handle_event(self, frame: Frame) -> None:  # greenswitch name; takes a parsed frame
        ctype = frame.content_type
        if ctype in (COMMAND_REPLY, API_RESPONSE):
            if self._commands_sent:
                self._commands_sent.pop(0).set(frame)
            else:
                log.warning("ESL %s: reply with no pending command: %s", self.label, frame.reply_text[:80])
        elif frame.is_event:
            try:
                event = decode_event(frame)
            except EslProtocolError as exc:
                log.warning("ESL %s: undecodable event dropped: %s", self.label, exc)
                return
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - one bad event must not kill the connection
                log.exception("ESL %s: routing %r failed", self.label, event)
        elif ctype == AUTH_REQUEST:
            self._auth_request_event.set()
        elif ctype == DISCONNECT_NOTICE:
            if frame.headers.get("Content-Disposition") == "linger":
                self._lingering = True
            else:
                self._notice = "FreeSWITCH sent a disconnect notice: " + frame.text.strip().replace("\n", " ")
        elif ctype == RUDE_REJECTION:
            self._rejected = True
            self._notice = "rejected by the event socket ACL"
            self._auth_request_event.set()
        elif ctype == LOG_DATA:
            log.debug("ESL %s log: %s", self.label, frame.text.rstrip())
        else:
            log.debug("ESL %s: ignoring frame of type %r", self.label, ctype)

    # -- writing --------------------------------------------------------------
    def send(self, data: str, timeout: float | None = None, headers: dict[str, str] | None = None) -> Frame:
        """Send one command and wait for its reply frame (command/reply or api/response)."""
        if self._done or not self.connected:
            raise EslDisconnected(f"ESL {self.label}: not connected")
        raw = command_bytes(data, headers)
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        with self._write_lock:
            self._commands_sent.append(result)
            try:
                self.sock.sendall(raw)
            except OSError as exc:
                self._teardown(f"send failed: {exc}")
                raise EslDisconnected(f"ESL {self.label}: send failed: {exc}") from None
        try:
            frame: Frame = result.get(timeout=timeout)
        except gevent.Timeout:
            # The late reply still pops this entry, which keeps FIFO matching right.
            raise EslTimeout(f"ESL {self.label}: no reply to {_describe(data)} within {timeout}s") from None
        return frame

    def _teardown(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        self.connected = False
        if self.sock is not None:
            try:
                self.sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        err = EslDisconnected(f"ESL {self.label}: {reason}")
        pending, self._commands_sent = self._commands_sent, []
        for result in pending:
            result.set_exception(err)
        self._auth_request_event.set()
        self._on_closed(self, reason)


Callback = Callable[["EslClient"], Any]


class EslClient:
    """One FreeSWITCH host.  See the module docstring and CONTRACTS.md "ESL client"."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        timeout: float = 10.0,
        events: Sequence[str] = DEFAULT_EVENTS,
        event_format: str = "plain",
        reconnect: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.label = f"{host}:{self.port}"
        self.timeout = timeout
        self._password = password
        self._subscribe = event_subscribe_cmd(events, event_format)
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._group = Group()
        self._conn: _Connection | None = None
        self._up = gevent.event.Event()
        self._lost = gevent.event.Event()
        self._stopping = gevent.event.Event()  # set by close(): wakes the supervisor from its backoff
        self._closing = False
        self._supervisor: gevent.Greenlet | None = None
        self._streams: dict[str, EventStream] = {}
        self._jobs: dict[str, gevent.event.AsyncResult] = {}
        self._job_streams: dict[str, str] = {}  # Job-UUID -> channel uuid whose stream also gets it
        self._disconnect_cbs: list[Callback] = []
        self._reconnect_cbs: list[Callback] = []
        self._event_cbs: list[Callable[[EslEvent], Any]] = []
        self.connects = 0

    def __repr__(self) -> str:  # never shows the password
        return f"EslClient({self.label}, connected={self.connected}, legs={self.load})"

    @classmethod
    def from_address(cls, address: str, password: str, **kwargs: Any) -> EslClient:
        host, port = parse_address(address)
        return cls(host, port, password, **kwargs)

    # -- state ----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected and self._up.is_set()

    @property
    def load(self) -> int:
        """Channels this client follows (the pool's measure of how busy a host is)."""
        return len(self._streams)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._up.wait(timeout)

    # -- lifecycle ------------------------------------------------------------
    def connect(self) -> None:
        """Connect, authenticate and subscribe now (raises on failure), then keep reconnecting."""
        if self._supervisor is not None:
            raise RuntimeError(f"ESL {self.label}: already started")
        self._closing = False
        self._stopping.clear()
        self._open()
        self._supervisor = self._group.spawn(self._supervise, True)

    def start(self) -> None:
        """Connect in the background, retrying with backoff until it works (for the pool)."""
        if self._supervisor is not None:
            raise RuntimeError(f"ESL {self.label}: already started")
        self._closing = False
        self._stopping.clear()
        self._supervisor = self._group.spawn(self._supervise, False)

    def close(self) -> None:
        """Stop reconnecting, say `exit`, fail whatever still waits, join every greenlet."""
        self._closing = True
        self._stopping.set()
        self._lost.set()
        conn = self._conn
        if conn is not None:
            conn.stop()
        self._up.clear()
        self._fail_jobs(EslDisconnected(f"ESL {self.label}: client closed"))
        for stream in list(self._streams.values()):
            stream.close()
        self._streams.clear()
        self._group.join(timeout=STOP_TIMEOUT_S)
        self._group.kill(timeout=STOP_TIMEOUT_S)
        self._supervisor = None

    def _open(self) -> None:
        conn = _Connection(
            self.host, self.port, self._password, self.timeout, self._group, self._route, self._closed
        )
        conn.connect()
        try:
            reply = conn.send(self._subscribe, timeout=self.timeout)
        except EslError:
            conn.stop()
            raise
        if not reply.reply_text.startswith("+OK"):
            conn.stop()
            raise EslError(f"ESL {self.label}: event subscription refused: {reply.reply_text}")
        self._conn = conn
        self.connects += 1
        self._up.set()
        log.info("ESL %s connected (connection #%s)", self.label, self.connects)

    def _closed(self, conn: _Connection, reason: str) -> None:
        if conn is not self._conn:
            return
        self._up.clear()
        self._conn = None
        err = EslDisconnected(f"ESL {self.label}: connection lost: {reason}")
        self._fail_jobs(err)
        marker = synthetic_event(DISCONNECTED, Reason=reason)
        for stream in list(self._streams.values()):
            stream.put(marker)
        if not self._closing:
            log.warning(
                "ESL %s: connection lost (%s); %s",
                self.label,
                reason,
                "reconnecting" if self._reconnect else "not reconnecting",
            )
            for cb in list(self._disconnect_cbs):
                self._group.spawn(self._safe_call, cb, self)
        self._lost.set()

    def _supervise(self, connected: bool) -> None:
        delays = self._backoff.delays()
        while not self._closing:
            if connected:
                self._lost.wait()
                self._lost.clear()
                if self._closing or not self._reconnect:
                    return
                connected = False
                delays = self._backoff.delays()
            try:
                self._open()
            except EslError as exc:
                delay = next(delays)
                log.warning("ESL %s: connect failed (%s); retrying in %.2fs", self.label, exc, delay)
                if self._stopping.wait(delay):
                    return
                continue
            connected = True
            if self.connects > 1:
                marker = synthetic_event(RECONNECTED)
                for stream in list(self._streams.values()):
                    stream.put(marker)
                for cb in list(self._reconnect_cbs):
                    self._group.spawn(self._safe_call, cb, self)

    def _safe_call(self, cb: Callable[..., Any], *args: Any) -> None:
        try:
            cb(*args)
        except Exception:  # noqa: BLE001 - a callback's bug must not kill the client
            log.exception("ESL %s: callback %r failed", self.label, cb)

    # -- callbacks ------------------------------------------------------------
    def on_disconnect(self, callback: Callback) -> None:
        self._disconnect_cbs.append(callback)

    def on_reconnect(self, callback: Callback) -> None:
        self._reconnect_cbs.append(callback)

    def on_event(self, callback: Callable[[EslEvent], Any]) -> None:
        """Called (in the reader greenlet: be quick, do not block) with every event."""
        self._event_cbs.append(callback)

    def spawn(self, func: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        """Run `func` in a greenlet owned by this client (joined on close)."""
        return self._group.spawn(func, *args)

    # -- commands -------------------------------------------------------------
    def _require(self) -> _Connection:
        conn = self._conn
        if conn is None or not conn.connected or not self._up.is_set():
            raise EslDisconnected(f"ESL {self.label}: not connected")
        return conn

    def command(
        self, command: str, headers: dict[str, str] | None = None, timeout: float | None = None
    ) -> str:
        """A raw ESL command (`event ...`, `filter ...`); returns its Reply-Text."""
        frame = self._require().send(command, timeout=timeout or self.timeout, headers=headers)
        return frame.reply_text

    def api(self, command: str, timeout: float | None = None) -> str:
        """`api <command>`; returns the api/response body exactly (some end in \\n, some do not)."""
        frame = self._require().send(f"api {command}", timeout=timeout or self.timeout)
        if frame.content_type != API_RESPONSE:
            raise CommandFailed(
                f"api {_describe(command)}: {frame.reply_text or frame.content_type}", frame.reply_text
            )
        return frame.text

    def bgapi(self, command: str, timeout: float | None = None, uuid: str | None = None) -> str:
        """`bgapi <command>` with our own Job-UUID; waits for that BACKGROUND_JOB and returns its body.

        With `uuid`, the BACKGROUND_JOB event is also put into that channel's stream, in wire
        order (how a Leg learns that its originate failed, relative to the channel's events).
        """
        wait = timeout or self.timeout
        conn = self._require()
        job = str(uuidlib.uuid4())
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._jobs[job] = result
        if uuid:
            self._job_streams[job] = uuid
        try:
            with gevent.Timeout(
                wait,
                EslTimeout(
                    f"ESL {self.label}: bgapi {_describe(command)} (job {job}) not done within {wait}s"
                ),
            ):
                frame = conn.send(f"bgapi {command}", headers={"Job-UUID": job})
                if not frame.reply_text.startswith("+OK"):
                    raise CommandFailed(f"bgapi {_describe(command)}: {frame.reply_text}", frame.reply_text)
                event: EslEvent = result.get()
        finally:
            self._jobs.pop(job, None)
            self._job_streams.pop(job, None)
        return event.body

    def _fail_jobs(self, err: Exception) -> None:
        jobs, self._jobs = self._jobs, {}
        for result in jobs.values():
            result.set_exception(err)

    # -- routing --------------------------------------------------------------
    def events_for(self, uuid: str) -> EventStream:
        """The stream of events for channel `uuid` (the same one if already registered)."""
        stream = self._streams.get(uuid)
        if stream is None or stream.closed:
            stream = EventStream(uuid)
            self._streams[uuid] = stream
        return stream

    def release(self, uuid: str) -> None:
        stream = self._streams.pop(uuid, None)
        if stream is not None:
            stream.close()

    def _route(self, event: EslEvent) -> None:
        name = event.name
        if name == "BACKGROUND_JOB":
            job_uuid = event.headers.get("Job-UUID", "")
            job = self._jobs.get(job_uuid)
            if job is not None:
                job.set(event)
            owner = self._streams.get(self._job_streams.get(job_uuid, ""))
            if owner is not None:
                owner.put(event)
        uid = event.unique_id
        if name == "CHANNEL_UUID":
            old = event.headers.get("Old-Unique-ID", "")
            if old in self._streams and uid and uid not in self._streams:
                stream = self._streams.pop(old)
                stream.uuid = uid
                self._streams[uid] = stream
                log.info("ESL %s: channel %s renamed to %s", self.label, old, uid)
        targets = []
        if uid and uid in self._streams:
            targets.append(self._streams[uid])
        if name in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):  # fired on the A leg only (§2.3)
            for header in ("Other-Leg-Unique-ID", "Bridge-B-Unique-ID"):
                other = self._streams.get(event.headers.get(header, ""))
                if other is not None and other not in targets:
                    targets.append(other)
        for stream in targets:
            stream.put(event)
        for cb in self._event_cbs:
            try:
                cb(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not kill the reader
                log.exception("ESL %s: event listener failed on %r", self.label, event)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port); clear error otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ESL host must be host:port, got {address!r}")
    return host, int(port)


class EslPool:
    """One EslClient per FreeSWITCH host (Settings.esl_hosts); new calls go to the least-loaded one."""

    def __init__(self, addresses: Sequence[str], password: str, **client_kwargs: Any) -> None:
        if not addresses:
            raise ValueError("at least one ESL host is needed")
        self.clients = [EslClient.from_address(a, password, **client_kwargs) for a in addresses]
        self._next = 0

    @classmethod
    def from_settings(cls, settings: Any, **client_kwargs: Any) -> EslPool:
        return cls(settings.esl_hosts, settings.esl_password, timeout=settings.esl_timeout_s, **client_kwargs)

    def start(self) -> None:
        for client in self.clients:
            client.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once at least one host is connected."""
        if any(c.connected for c in self.clients):
            return True
        waiters = [gevent.spawn(c.wait_connected, timeout) for c in self.clients]
        try:
            done = gevent.wait(waiters, timeout=timeout, count=1)
            return any(g.value for g in done)
        finally:
            gevent.killall(waiters)

    def pick(self) -> EslClient:
        """The healthy client with the fewest legs (ties rotate); EslDisconnected if none is up."""
        healthy = [c for c in self.clients if c.connected]
        if not healthy:
            names = ", ".join(c.label for c in self.clients)
            raise EslDisconnected(f"no FreeSWITCH reachable ({names})")
        self._next += 1
        n = len(self.clients)
        return min(healthy, key=lambda c: (c.load, (self.clients.index(c) - self._next) % n))

    def client_for(self, label: str) -> EslClient:
        for client in self.clients:
            if client.label == label:
                return client
        raise KeyError(f"no ESL client for {label!r}")

    def on_disconnect(self, callback: Callback) -> None:
        for client in self.clients:
            client.on_disconnect(callback)

    def on_reconnect(self, callback: Callback) -> None:
        for client in self.clients:
            client.on_reconnect(callback)

    def close(self) -> None:
        for client in self.clients:
            client.close()
