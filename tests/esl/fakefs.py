"""Tiny fake FreeSWITCH event sockets for the client tests (real TCP on 127.0.0.1, port 0).

`ScriptedFS` answers commands from tables and lets a test push events.
`ReplayFS` replays a capture's received bytes: on each client command it sends
the captured reply and then every captured event up to the next reply, with
the captured Job-UUIDs rewritten to the client's own (same length, so every
Content-Length stays right).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import gevent
import gevent.queue
from gevent.server import StreamServer

from worker.esl_protocol import API_RESPONSE, COMMAND_REPLY, EslParser

DISCONNECT = (
    b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
    b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
)
SAFE = "!$'()*,-./_~"  # FS leaves these (and letters/digits) unencoded


def reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def api_response(body: str) -> bytes:
    data = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def plain_event(headers: list[tuple[str, str]], body: str = "") -> bytes:
    block = "".join(f"{k}: {quote(v, safe=SAFE)}\n" for k, v in headers)
    if body:
        raw = block.encode() + b"Content-Length: %d\n\n" % len(body.encode()) + body.encode()
    else:
        raw = block.encode() + b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(raw) + raw


class _CommandReader:
    def __init__(self, sock) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> tuple[str, dict[str, str]] | None:
        while b"\n\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        block, _, self.buf = self.buf.partition(b"\n\n")
        lines = block.decode().split("\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        return lines[0], headers


class ScriptedFS:
    """Answers auth/event/api/bgapi/exit; a test adds api replies and pushes events."""

    def __init__(self, password: str = "ClueCon") -> None:  # noqa: S107 - stock FS test password
        self.password = password
        self.api_replies: dict[str, str | None] = {}  # command prefix -> body (None: never answer)
        self.bgapi_replies: dict[str, str] = {}  # command prefix -> BACKGROUND_JOB body
        self.bgapi_hold: set[str] = set()  # prefixes whose BACKGROUND_JOB is sent only by release_jobs()
        self.held_jobs: list[tuple[str, str, str]] = []
        self.on_command: Callable[[ScriptedFS, object, str], bool] | None = None
        self.commands: gevent.queue.Queue = gevent.queue.Queue()
        self.authed: list = []
        self.connections = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> ScriptedFS:
        self.server.start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.drop_all()
        self.server.stop(timeout=1)

    def drop_all(self) -> None:
        for sock in list(self.authed):
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()
        self.authed.clear()

    def push(self, data: bytes) -> None:
        for sock in list(self.authed):
            try:
                sock.sendall(data)
            except OSError:
                pass

    def release_jobs(self) -> None:
        jobs, self.held_jobs = self.held_jobs, []
        for job, cmd, body in reversed(jobs):  # out of order on purpose
            self.push(self._job_event(job, cmd, body))

    @staticmethod
    def _job_event(job: str, cmd: str, body: str) -> bytes:
        verb, _, arg = cmd.partition(" ")
        return plain_event(
            [
                ("Event-Name", "BACKGROUND_JOB"),
                ("Job-UUID", job),
                ("Job-Command", verb),
                ("Job-Command-Arg", arg),
            ],
            body,
        )

    def _handle(self, sock, _addr) -> None:
        self.connections += 1
        reader = _CommandReader(sock)
        sock.sendall(b"Content-Type: auth/request\n\n")
        authed = False
        try:
            while True:
                got = reader.next()
                if got is None:
                    return
                cmd, headers = got
                self.commands.put((cmd, headers))
                if self.on_command is not None and self.on_command(self, sock, cmd):
                    continue
                if cmd.startswith("auth "):
                    if cmd[5:] == self.password:
                        authed = True
                        self.authed.append(sock)
                        sock.sendall(reply("+OK accepted"))
                    else:
                        sock.sendall(reply("-ERR invalid") + DISCONNECT)
                        return
                elif not authed:
                    sock.sendall(reply("-ERR command not found"))
                elif cmd.startswith("event "):
                    sock.sendall(reply(f"+OK event listener enabled {cmd.split()[1]}"))
                elif cmd == "exit":
                    sock.sendall(reply("+OK bye") + DISCONNECT)
                    return
                elif cmd.startswith("api "):
                    body = self._lookup(
                        self.api_replies, cmd[4:], f"-ERR {cmd[4:].split()[0]} Command not found!\n"
                    )
                    if body is not None:
                        sock.sendall(api_response(body))
                elif cmd.startswith("bgapi "):
                    job = headers.get("Job-UUID", "generated-job")
                    sock.sendall(
                        reply(f"+OK Job-UUID: {job}").replace(b"\n\n", f"\nJob-UUID: {job}\n\n".encode())
                    )
                    body = self._lookup(self.bgapi_replies, cmd[6:], "-ERR no reply\n") or ""
                    if any(cmd[6:].startswith(p) for p in self.bgapi_hold):
                        self.held_jobs.append((job, cmd[6:], body))
                    else:
                        sock.sendall(self._job_event(job, cmd[6:], body))
                else:
                    sock.sendall(reply("-ERR command not found"))
        except OSError:
            return
        finally:
            if sock in self.authed:
                self.authed.remove(sock)
            sock.close()

    @staticmethod
    def _lookup(table: dict[str, str | None], cmd: str, default: str) -> str | None:
        for prefix, body in table.items():
            if cmd.startswith(prefix):
                return body
        return default


def split_frames(data: bytes) -> list[bytes]:
    """The exact bytes of each frame in a capture."""
    parser = EslParser()
    parser.feed(data)
    out: list[bytes] = []
    pos = 0
    for _frame in parser.frames():
        end = len(data) - parser.buffered
        out.append(data[pos:end])
        pos = end
    assert pos == len(data)
    return out


def _is_reply(raw: bytes) -> bool:
    head = raw.split(b"\n", 1)[0]
    return head in (f"Content-Type: {COMMAND_REPLY}".encode(), f"Content-Type: {API_RESPONSE}".encode())


class ReplayFS:
    """Replays `recv` (a .recv.bin) reply by reply, as the real switch sent it."""

    CHUNK = 997  # send in odd-sized pieces so that frames straddle TCP writes

    def __init__(self, recv: Path, password: str = "ClueCon") -> None:  # noqa: S107 - stock FS test password
        self.password = password
        frames = split_frames(recv.read_bytes())
        self.groups: list[bytes] = [b""]
        for raw in frames:
            if _is_reply(raw):
                self.groups.append(raw)
            else:
                self.groups[-1] += raw
        self.commands: list[tuple[str, dict[str, str]]] = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> ReplayFS:
        self.server.start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.stop(timeout=1)

    def _send(self, sock, data: bytes) -> None:
        for i in range(0, len(data), self.CHUNK):
            sock.sendall(data[i : i + self.CHUNK])

    def _handle(self, sock, _addr) -> None:
        reader = _CommandReader(sock)
        groups = list(self.groups)
        self._send(sock, groups.pop(0))
        try:
            while groups:
                got = reader.next()
                if got is None:
                    return
                cmd, headers = got
                self.commands.append((cmd, headers))
                group = groups.pop(0)
                if cmd.startswith("auth "):
                    assert cmd[5:] == self.password
                if cmd.startswith("bgapi ") and b"Job-UUID: " in group:
                    captured = group.split(b"Job-UUID: ", 1)[1][:36]
                    mine = headers["Job-UUID"].encode()
                    assert len(mine) == len(captured)
                    group = group.replace(captured, mine)
                    groups = [g.replace(captured, mine) for g in groups]
                self._send(sock, group)
        except OSError:
            return
        finally:
            sock.close()
