"""The stand-in switch's inbound Event Socket: connections, commands, api/bgapi.

``SimSwitch`` is the in-process API (tests, ``python -m sim``, the demo)::

    switch = SimSwitch(password="ClueCon", companies_dir="sim/companies", phones="1000:answer:2", speed=20)
    switch.start(); switch.port; switch.channels(); switch.phone("1000"); switch.stop()

Replies are byte-exact with FreeSWITCH 1.10.12 (``fs-captures/esl_*``); an
``api`` command blocks its connection's event output until its reply is written,
as on the real switch.  ``write_mode`` makes TCP segmentation awkward on purpose:
``"coalesce"`` (default) packs every queued message into one write, ``"fragment"``
also splits writes into small random pieces, ``"each"`` writes message by message.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
import uuid as uuidlib
from pathlib import Path

import gevent
import gevent.event
import gevent.pool
import gevent.queue
from gevent.server import StreamServer

from sim import wire
from sim.audio_fork import ForkError
from sim.channels import TRUNK_GATEWAY, Channel, Engine, Job, split_args
from sim.events import Event, EventFactory
from sim.phones import Phone, parse_phones
from sim.scenario import AudioRenderer, CompanyDirectory, Scenario

log = logging.getLogger(__name__)

FIRST_PACKET_TIMEOUT_S = 25.0
HEARTBEAT_S = 20.0  # FreeSWITCH sends HEARTBEAT every 20 s (wall clock, not scaled by speed)
VERSION = (
    "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit "
    "(git a88d069 2024-08-02 21:02:27Z 64bit)\n"
)
LOG_LEVELS = {"CONSOLE": 0, "ALERT": 1, "CRIT": 2, "ERR": 3, "WARNING": 4, "NOTICE": 5, "INFO": 6, "DEBUG": 7}
EVENT_NAMES = set(
    """CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE CHANNEL_CALLSTATE CHANNEL_ANSWER
CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD
CHANNEL_UNHOLD CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA
CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID
API LOG INBOUND_CHAN OUTBOUND_CHAN STARTUP SHUTDOWN PUBLISH UNPUBLISH TALK NOTALK SESSION_CRASH
MODULE_LOAD MODULE_UNLOAD DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT PRESENCE_PROBE
MESSAGE_WAITING MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE
PRIVATE_COMMAND HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE RELOADXML
NOTIFY PHONE_FEATURE PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE REQUEST_PARAMS
CHANNEL_DATA GENERAL COMMAND SESSION_HEARTBEAT CLIENT_DISCONNECTED SERVER_DISCONNECTED SEND_INFO
RECV_INFO RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE CALL_SECURE NAT RECORD_START RECORD_STOP
PLAYBACK_START PLAYBACK_STOP CALL_UPDATE FAILURE SOCKET_DATA MEDIA_BUG_START MEDIA_BUG_STOP
CONFERENCE_DATA_QUERY CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT CALL_DETAIL DEVICE_STATE
TEXT SHUTDOWN_REQUESTED ALL""".split()
)
SHOW_COLUMNS = (
    "uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,"
    "application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,"
    "write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,"
    "callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,"
    "initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context"
).split(",")
_UUID_RE = re.compile(r"^[0-9a-fA-F-]{36}$")


class SimSwitch:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "ClueCon",  # noqa: S107 - FS default
        companies_dir: str | Path | None = None,
        phones: str | dict[str, Phone] = "",
        speed: float = 1.0,
        write_mode: str = "coalesce",
        hostname: str = "sim",
        sip_domain: str = "127.0.0.1",
        seed: int | None = None,
    ) -> None:
        if write_mode not in ("coalesce", "fragment", "each"):
            raise ValueError(f"write_mode must be coalesce, fragment or each, not {write_mode!r}")
        self.host = host
        self._port = port
        self.password = password
        self.write_mode = write_mode
        self.rng = random.Random(seed)
        self.started_at = time.time()
        self.companies = CompanyDirectory(companies_dir)
        self.phones = parse_phones(phones) if isinstance(phones, str) else dict(phones)
        self.factory = EventFactory(str(uuidlib.uuid4()), hostname=hostname)
        self.engine = Engine(
            self.factory,
            self.emit,
            speed,
            self.companies,
            self.phones,
            AudioRenderer(),
            sip_domain=sip_domain,
        )
        self.connections: set[EslConnection] = set()
        self._server: StreamServer | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self.global_vars = {"domain": sip_domain, "local_ip_v4": "127.0.0.1", "hostname": hostname}

    # -- in-process API ---------------------------------------------------------------------------------
    def start(self) -> SimSwitch:
        self._server = StreamServer((self.host, self._port), self._accept)
        self._server.start()
        self._heartbeat = gevent.spawn(self._heartbeats)
        log.info("sim: ESL listening on %s:%s (speed %s)", self.host, self.port, self.engine.speed)
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.server_port)

    @property
    def speed(self) -> float:
        return self.engine.speed

    def _heartbeats(self) -> None:
        while True:
            gevent.sleep(HEARTBEAT_S)
            self.emit(
                self.factory.heartbeat(
                    time.time() - self.started_at, len(self.channels()), self.engine.sessions_since_start
                )
            )

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
        if self._server is not None:
            self._server.stop(timeout=1)
        for conn in list(self.connections):
            conn.close()
        self.engine.shutdown()

    def channels(self) -> list[Channel]:
        return [c for c in self.engine.channels.values() if not c.hungup]

    def channel(self, uuid: str) -> Channel | None:
        return self.engine.get(uuid)

    def phone(self, ext: str) -> Phone:
        return self.phones[ext]

    def add_company(self, scenario: Scenario) -> None:
        self.companies.add(scenario)

    def emit(self, event: Event) -> None:
        for conn in list(self.connections):
            conn.deliver(event)

    def __enter__(self) -> SimSwitch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self, sock: socket.socket, addr: tuple) -> None:
        conn = EslConnection(self, sock, addr)
        self.connections.add(conn)
        try:
            conn.run()
        finally:
            self.connections.discard(conn)


class EslConnection:
    def __init__(self, switch: SimSwitch, sock: socket.socket, addr: tuple) -> None:
        self.switch = switch
        self.engine = switch.engine
        self.sock = sock
        self.addr = addr
        self.authed = False
        self.fmt = "plain"
        self.all_events = False
        self.events: set[str] = set()
        self.subclasses: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.log_level: int | None = None
        self.in_api = False
        self.held: list[bytes] = []
        self.out: gevent.queue.Queue = gevent.queue.Queue()
        self.closing = False
        self.writes = 0  # sendall calls (tests check that fragment mode really splits)
        self.writer: gevent.Greenlet | None = None

    # -- output ------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if not self.closing:
            self.out.put(data)

    def _write_loop(self) -> None:
        while True:
            item = self.out.get()
            if item is None:
                return
            chunks = [item]
            if self.switch.write_mode != "each":
                while not self.out.empty():
                    nxt = self.out.get_nowait()
                    if nxt is None:
                        self.out.put(None)
                        break
                    chunks.append(nxt)
            try:
                if self.switch.write_mode == "each":
                    self.writes += 1
                    self.sock.sendall(chunks[0])
                elif self.switch.write_mode == "fragment":
                    data = b"".join(chunks)
                    i = 0
                    while i < len(data):
                        n = self.switch.rng.randint(1, 97)
                        self.sock.sendall(data[i : i + n])
                        self.writes += 1
                        i += n
                        gevent.sleep(0)
                else:
                    self.writes += 1
                    self.sock.sendall(b"".join(chunks))
            except OSError:
                return

    def deliver(self, ev: Event) -> None:
        if not self._subscribed(ev) or not self._passes_filters(ev):
            return
        data = wire.event_frame(self.fmt, ev.headers, ev.body)
        if self.in_api:
            self.held.append(data)
        else:
            self.send(data)

    def _subscribed(self, ev: Event) -> bool:
        if not self.authed:
            return False
        if self.all_events:
            return True
        name = ev.name
        if name == "CUSTOM":
            return "CUSTOM" in self.events and ev.subclass in self.subclasses
        return name in self.events

    def _passes_filters(self, ev: Event) -> bool:
        if not self.filters:
            return True
        positive = False
        has_positive = False
        for header, value in self.filters:
            vals = ev.all(header)
            if value.startswith("-"):
                if any(v.lower() == value[1:].lower() for v in vals):
                    return False
                continue
            has_positive = True
            if value.startswith("/"):
                try:
                    rx = re.compile(value[1:].rstrip("/"))
                except re.error:
                    continue
                if any(rx.search(v) for v in vals):
                    positive = True
            elif any(v.lower() == value.lower() for v in vals):
                positive = True
        return positive or not has_positive

    def close(self) -> None:
        self.closing = True
        self.out.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- input --------------------------------------------------------------------------------------
    def run(self) -> None:
        self.writer = gevent.spawn(self._write_loop)
        parser = wire.CommandParser()
        self.send(wire.auth_request())
        first = True
        try:
            while not self.closing:
                cmd = parser.next_command()
                if cmd is None:
                    try:
                        if first:
                            self.sock.settimeout(FIRST_PACKET_TIMEOUT_S)
                        data = self.sock.recv(65536)
                        self.sock.settimeout(None)
                    except TimeoutError:
                        log.info(
                            "esl %s: no command within %ss, disconnecting", self.addr, FIRST_PACKET_TIMEOUT_S
                        )
                        break
                    except OSError:
                        break
                    if not data:
                        break
                    parser.feed(data)
                    continue
                first = False
                if not self.handle(cmd):
                    break
        except wire.ProtocolError as exc:
            log.info("esl %s: protocol error: %s", self.addr, exc)
        finally:
            self.closing = True
            self.out.put(None)
            if self.writer is not None:
                self.writer.join(timeout=5)
            try:
                self.sock.close()
            except OSError:
                pass

    def _goodbye(self) -> None:
        self.send(wire.disconnect_notice())

    def handle(self, cmd: wire.Command) -> bool:
        """Run one command; False closes the connection."""
        word = cmd.word
        if not self.authed:
            if word == "auth":
                if cmd.rest == self.switch.password:
                    self.authed = True
                    self.send(wire.command_reply("+OK accepted"))
                    return True
                log.info("esl %s: wrong password", self.addr)
                self.send(wire.command_reply("-ERR invalid"))
                self._goodbye()
                return False
            if word in ("exit", "..."):
                self.send(wire.command_reply("+OK bye"))
                self._goodbye()
                return False
            self.send(wire.command_reply("-ERR command not found"))
            return True
        if word in ("exit", "..."):
            self.send(wire.command_reply("+OK bye"))
            self._goodbye()
            return False
        handler = {
            "api": self._cmd_api,
            "bgapi": self._cmd_bgapi,
            "event": self._cmd_event,
            "events": self._cmd_event,
            "nixevent": self._cmd_nixevent,
            "noevents": self._cmd_noevents,
            "filter": self._cmd_filter,
            "linger": self._cmd_linger,
            "nolinger": self._cmd_linger,
            "log": self._cmd_log,
            "nolog": self._cmd_nolog,
            "sendmsg": self._cmd_sendmsg,
            "myevents": self._cmd_myevents,
            "divert_events": self._cmd_divert,
            "auth": self._cmd_reauth,
        }.get(word)
        if handler is None:
            self.send(wire.command_reply("-ERR command not found"))
            return True
        handler(cmd)
        return True

    # -- ESL commands -------------------------------------------------------------------------------------
    def _cmd_reauth(self, cmd: wire.Command) -> None:
        self.send(wire.command_reply("+OK accepted"))

    def _cmd_event(self, cmd: wire.Command) -> None:
        words = cmd.rest.split()
        fmt = self.fmt
        if words and words[0].lower() in ("plain", "json", "xml"):
            fmt = words.pop(0).lower()
        valid = 0
        custom = False
        for w in words:
            if custom:
                self.subclasses.add(w)
                valid += 1
                continue
            name = w.upper()
            if name.startswith("SWITCH_EVENT_"):
                name = name[len("SWITCH_EVENT_") :]
            if name not in EVENT_NAMES:
                continue
            valid += 1
            if name == "ALL":
                self.all_events = True
            elif name == "CUSTOM":
                custom = True
                self.events.add("CUSTOM")
            else:
                self.events.add(name)
        if not valid:
            self.send(wire.command_reply("-ERR no keywords supplied"))
            return
        self.fmt = "json" if fmt == "json" else "plain"
        self.send(wire.command_reply(f"+OK event listener enabled {fmt}"))

    def _cmd_nixevent(self, cmd: wire.Command) -> None:
        words = cmd.rest.split()
        custom = False
        for w in words:
            if custom:
                self.subclasses.discard(w)
                continue
            name = w.upper()
            if name == "ALL":
                self.all_events = False
                self.events.clear()
                self.subclasses.clear()
            elif name == "CUSTOM":
                custom = True
            else:
                self.events.discard(name)
        self.send(wire.command_reply("+OK events nixed"))

    def _cmd_noevents(self, cmd: wire.Command) -> None:
        if not (self.all_events or self.events):
            self.send(wire.command_reply("-ERR not listening for events"))
            return
        self.all_events = False
        self.events.clear()
        self.subclasses.clear()
        self.send(wire.command_reply("+OK no longer listening for events"))

    def _cmd_filter(self, cmd: wire.Command) -> None:
        words = cmd.rest.split(" ", 2) if cmd.rest else []
        if words and words[0] == "delete":
            if len(words) >= 2 and words[1] == "all":
                self.filters.clear()
                self.send(wire.command_reply("+OK filter deleted. [all][]"))
                return
            header = words[1] if len(words) > 1 else ""
            value = words[2] if len(words) > 2 else ""
            self.filters = [
                (h, v) for h, v in self.filters if not (h == header and (not value or v == value))
            ]
            self.send(wire.command_reply(f"+OK filter deleted. [{header}][{value}]"))
            return
        if len(words) < 2:
            self.send(wire.command_reply("-ERR invalid syntax"))
            return
        header = words[0]
        value = " ".join(words[1:])
        self.filters.append((header, value))
        self.send(wire.command_reply(f"+OK filter added. [{header}]=[{value}]"))

    def _cmd_linger(self, cmd: wire.Command) -> None:
        self.send(wire.command_reply("-ERR not controlling a session"))

    def _cmd_log(self, cmd: wire.Command) -> None:
        arg = cmd.rest.strip() or "DEBUG"
        level = int(arg) if arg.isdigit() else LOG_LEVELS.get(arg.upper())
        if level is None or level > 7:
            self.send(wire.command_reply("-ERR invalid log level"))
            return
        self.log_level = level
        self.send(wire.command_reply(f"+OK log level {arg} [{level}]"))

    def _cmd_nolog(self, cmd: wire.Command) -> None:
        if self.log_level is None:
            self.send(wire.command_reply("-ERR not loging"))
            return
        self.log_level = None
        self.send(wire.command_reply("+OK no longer logging"))

    def _cmd_divert(self, cmd: wire.Command) -> None:
        on = cmd.rest.strip().lower() == "on"
        self.send(wire.command_reply("+OK events diverted" if on else "+OK events not diverted"))

    def _cmd_myevents(self, cmd: wire.Command) -> None:
        uuid = cmd.rest.split(" ")[-1].strip() if cmd.rest else ""
        if not uuid or self.engine.get(uuid) is None:
            self.send(wire.command_reply("-ERR invalid uuid"))
            return
        self.all_events = True
        self.filters.append(("Unique-ID", uuid))
        self.send(wire.command_reply("+OK Events Enabled"))

    def _cmd_sendmsg(self, cmd: wire.Command) -> None:
        uuid = cmd.rest.strip() or cmd.headers.get("Unique-ID", "")
        ch = self.engine.get(uuid)
        if ch is None:
            self.send(wire.command_reply(f"-ERR invalid session id [{uuid}]"))
            return
        h = {k.lower(): v for k, v in cmd.headers.items()}
        self.send(wire.command_reply("+OK"))
        command = h.get("call-command", "")
        if command == "hangup":
            self.engine.spawn(self.engine.hangup, ch, h.get("hangup-cause", "NORMAL_CLEARING").upper())
        elif command == "execute":
            app = h.get("execute-app-name", "")
            arg = h.get("execute-app-arg", "")
            if cmd.body and h.get("content-type", "") == "text/plain":
                arg = cmd.body.decode("utf-8", errors="replace")
            if app == "playback":
                self.engine.broadcast(ch, arg, h.get("event-uuid"))
            elif app == "hangup":
                self.engine.spawn(self.engine.hangup, ch, (arg or "NORMAL_CLEARING").upper())
            else:
                log.info("call %s: sendmsg execute %s ignored by the simulator", uuid, app)

    def _cmd_api(self, cmd: wire.Command) -> None:
        self.in_api = True
        try:
            body, api_event = self.switch_api(cmd.rest, job_uuid=None)
        finally:
            self.send(wire.api_response(body))
            held, self.held = self.held, []
            self.in_api = False
            for data in held:
                self.send(data)
        if api_event is not None:
            self.switch.emit(api_event)
        if self.log_level is not None and cmd.rest.startswith("log "):
            self._log_line(cmd.rest)

    def _log_line(self, rest: str) -> None:
        parts = rest.split(" ", 2)
        level = LOG_LEVELS.get(parts[1].upper(), 7) if len(parts) > 1 else 7
        if self.log_level is not None and level <= self.log_level:
            text = (
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}.000000 0.00% [{parts[1].upper()}] "
                f"mod_commands.c:7200 {parts[2] if len(parts) > 2 else ''}\n"
            )
            self.send(wire.log_data(level, "mod_commands.c", "log_function", 7200, text))

    def _cmd_bgapi(self, cmd: wire.Command) -> None:
        job_uuid = cmd.headers.get("Job-UUID") or str(uuidlib.uuid4())
        self.send(wire.command_reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)]))
        self.engine.spawn(self._bg_job, cmd.rest, job_uuid)

    def _bg_job(self, line: str, job_uuid: str) -> None:
        body, api_event = self.switch_api(line, job_uuid=job_uuid)
        if api_event is not None:
            self.switch.emit(api_event)
            command, _, arg = line.partition(" ")
            self.switch.emit(self.switch.factory.background_job(job_uuid, command, arg, body))

    # -- api commands -------------------------------------------------------------------------------------
    def switch_api(self, line: str, job_uuid: str | None) -> tuple[str, Event | None]:
        """(reply body, API event to emit after it).  originate emits its own API/BACKGROUND_JOB events."""
        command, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        api_ev = self.switch.factory.api(command, arg)
        fn = getattr(self, f"_api_{command}", None) if re.fullmatch(r"[a-z_]+", command or "-") else None
        if command == "originate":
            job = Job("originate", arg, job_uuid, self.switch.emit, self.switch.factory)
            self.engine.spawn(self.engine.originate, arg, job)
            return job.result.get(), None
        if fn is None:
            return f"-ERR {command} Command not found!\n", api_ev
        try:
            return fn(arg), api_ev
        except Exception:
            log.exception("api %s failed inside the simulator", command)
            return "-ERR simulator error\n", api_ev

    def _chan(self, uuid: str) -> Channel | None:
        return self.engine.get(uuid.strip())

    def _api_uuid_exists(self, arg: str) -> str:
        return "true" if self._chan(arg.split(" ")[0] if arg else "") else "false"

    def _api_uuid_kill(self, arg: str) -> str:
        parts = arg.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        cause = parts[1].upper() if len(parts) > 1 else "NORMAL_CLEARING"
        self.engine.spawn(self.engine.hangup, ch, cause)
        return "+OK\n"

    def _api_uuid_send_dtmf(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <dtmf_data>\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        digits = parts[1].split("@", 1)[0]
        self.engine.spawn(self.engine.send_dtmf, ch, digits)
        return f"+OK {ch.uuid} sent DTMF {digits}.\n"

    def _api_uuid_broadcast(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR invalid uuid\n"
        legs = parts[2] if len(parts) > 2 else "aleg"
        path = parts[1]
        if "!" in path and not path.startswith(("tone_stream", "silence_stream")):
            path = path.split("!", 1)[0]
        targets = [ch]
        if legs in ("bleg", "both") and ch.peer is not None:
            targets = [ch.peer] if legs == "bleg" else [ch, ch.peer]
        for t in targets:
            self.engine.broadcast(t, path)
        return "+OK Message sent\n"

    def _api_uuid_break(self, arg: str) -> str:
        parts = arg.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        self.engine.break_playback(ch, all_=len(parts) > 1 and parts[1] in ("all", "both"))
        return "+OK\n"

    def _api_uuid_bridge(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        a, b = self._chan(parts[0]), self._chan(parts[1])
        if a is None or b is None or not (a.answered or b.answered) or a is b:
            return "-ERR Invalid uuid\n"
        self.engine.spawn(self.engine.bridge, a, b)
        return f"+OK {b.uuid}\n"

    def _api_uuid_getvar(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <var>\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR No such channel!\n"
        value = ch.getvar(parts[1])
        return "_undef_" if value is None else value

    def _api_uuid_setvar(self, arg: str) -> str:
        parts = split_args(arg)
        if len(parts) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR No such channel!\n"
        if len(parts) > 2:
            ch.extra_vars[parts[1]] = " ".join(parts[2:])
        else:
            ch.extra_vars[parts[1]] = ""
        return "+OK\n"

    def _api_uuid_record(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 3:
            return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        action, path = parts[1], parts[2]
        if action == "start":
            self.engine.record(ch, "start", path)
            return "+OK Success\n"
        if action == "stop":
            return (
                "+OK Success\n"
                if self.engine.record(ch, "stop", path)
                else "-ERR Cannot stop record session!\n"
            )
        return "+OK Success\n"

    def _api_uuid_audio_fork(self, arg: str) -> str:
        usage = (
            "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] "
            "[wss-url | path] [mono | mixed | stereo] [8000 | 16000] [bugname] [metadata]\n"
        )
        parts = split_args(arg)
        if len(parts) < 2:
            return usage
        ch = self._chan(parts[0])
        sub = parts[1]
        if ch is None:
            return "-ERR Operation Failed\n"
        if sub == "start":
            if len(parts) < 5:
                return usage
            url, mix, rate_s = parts[2], parts[3], parts[4]
            if mix not in ("mono", "mixed", "stereo"):
                return ""  # the module writes nothing; ESL turns it into -ERR no reply
            rate = {"8k": 8000, "16k": 16000}.get(rate_s)
            if rate is None:
                try:
                    rate = int(rate_s)
                except ValueError:
                    rate = 8000
            if rate not in (8000, 16000):
                return "-ERR Operation Failed\n"
            bugname, metadata = "audio_fork", None
            for extra in parts[5:]:
                if extra[:1] in ("{", "["):
                    metadata = extra
                else:
                    bugname = extra
            try:
                self.engine.start_fork(ch, url, mix, rate, metadata, bugname)
            except ForkError as exc:
                log.info("call %s: uuid_audio_fork start refused: %s", ch.uuid, exc)
                return "-ERR Operation Failed\n"
            return "+OK Success\n"
        if sub == "stop":
            bugname, text = "audio_fork", None
            for extra in parts[2:]:
                if extra[:1] in ("{", "["):
                    text = extra
                else:
                    bugname = extra
            return "+OK Success\n" if self.engine.stop_fork(ch, bugname, text) else "-ERR Operation Failed\n"
        if sub == "send_text":
            if len(parts) < 3:
                return usage
            bugname = "audio_fork"
            text = " ".join(parts[2:])
            if len(parts) > 3 and parts[2][:1] not in ("{", "["):
                bugname, text = parts[2], " ".join(parts[3:])
            fork = ch.forks.get(bugname)
            if fork is None:
                return "-ERR Operation Failed\n"
            fork.send_text(text)
            return "+OK Success\n"
        if sub in ("pause", "resume", "graceful-shutdown"):
            fork = ch.forks.get(parts[2] if len(parts) > 2 else "audio_fork")
            if fork is None:
                return "-ERR Operation Failed\n"
            if sub == "graceful-shutdown":
                fork.graceful_shutdown()
            else:
                fork.paused = sub == "pause"
            return "+OK Success\n"
        return usage

    def _api_sched_hangup(self, arg: str) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        ch = self._chan(parts[1])
        if ch is None:
            return "-ERR No such channel!\n"
        when = parts[0]
        try:
            secs = float(when[1:]) if when.startswith("+") else float(when) - time.time()
        except ValueError:
            return "-ERR invalid time\n"
        cause = parts[2].upper() if len(parts) > 2 else "ALLOTTED_TIMEOUT"
        gevent.spawn_later(self.engine.scaled(secs), self.engine.hangup, ch, cause)
        return "+OK\n"

    def _api_hupall(self, arg: str) -> str:
        parts = arg.split()
        cause = parts[0].upper() if parts else "MANAGER_REQUEST"
        if len(parts) >= 3:
            self.engine.spawn(self.engine.hupall, cause, parts[1], parts[2])
            return f"+OK hangup all channels matching [{parts[1]}]=[{parts[2]}] with cause: {cause}\n"
        self.engine.spawn(self.engine.hupall, cause)
        return f"+OK hangup all channels with cause {cause}\n"

    def _api_sofia_contact(self, arg: str) -> str:
        target = arg.strip().split("/")[-1]
        ext, _, domain = target.partition("@")
        phone = self.switch.phones.get(ext)
        if (
            phone is None
            or not phone.registered
            or (domain and domain not in (self.engine.sip_domain, "127.0.0.1"))
        ):
            return "error/user_not_registered"
        return phone.contact

    def _api_sofia(self, arg: str) -> str:
        words = arg.split()
        sep = "=" * 97 + "\n"
        if words[:2] == ["status", "gateway"]:
            if len(words) < 3 or words[2] != TRUNK_GATEWAY:
                return "Invalid Gateway!\n"
            rows = [
                ("Name", TRUNK_GATEWAY),
                ("Profile", "external"),
                ("Scheme", "Digest"),
                ("Realm", "sim"),
                ("Username", "sim"),
                ("Password", "yes"),
                ("From", "<sip:sim@sim>"),
                ("Contact", f"<sip:gw+{TRUNK_GATEWAY}@127.0.0.1:5080;transport=udp;gw={TRUNK_GATEWAY}>"),
                ("Exten", "sim"),
                ("To", "sip:sim@sim"),
                ("Proxy", "sip:sim"),
                ("Context", "public"),
                ("Expires", "3600"),
                ("Freq", "3600"),
                ("Ping", "0"),
                ("PingFreq", "0"),
                ("PingTime", "0.00"),
                ("PingState", "0/0/0"),
                ("State", "NOREG"),
                ("Status", "UP"),
                ("Uptime", f"{int(time.time() - self.switch.started_at)}s"),
                ("CallsIN", "0"),
                ("CallsOUT", str(self.engine.sessions_since_start)),
                ("FailedCallsIN", "0"),
                ("FailedCallsOUT", "0"),
            ]
            return sep + "".join(f"{k:<8}\t{v}\n" for k, v in rows) + sep
        if words[:1] == ["status"]:
            head = f"{'Name':>25}\t{'Type':>7}\t  {'Data':>40}\t{'State'}\n"
            table = [
                ("127.0.0.1", "alias", "internal", "ALIASED"),
                ("external", "profile", "sip:mod_sofia@127.0.0.1:5080", "RUNNING (0)"),
                (f"external::{TRUNK_GATEWAY}", "gateway", "sip:sim@sim", "NOREG"),
                ("internal", "profile", "sip:mod_sofia@127.0.0.1:5060", "RUNNING (0)"),
            ]
            body = "".join(f"{n:>25}\t{t:>7}\t  {d:>40}\t{st}\n" for n, t, d, st in table)
            return head + sep + body + sep + "2 profiles 1 alias\n"
        return "-ERR Usage: sofia status [gateway <name>]\n"

    def _api_show(self, arg: str) -> str:
        words = arg.split()
        if not words or words[0] not in ("channels", "calls"):
            return "-USAGE: show channels|calls [as json]\n"
        chans = self.switch.channels()
        if len(words) >= 2 and words[1] == "count":
            return f"\n{len(chans)} total.\n"
        rows = [self._show_row(c) for c in chans]
        if "json" in words:
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))
        lines = [",".join(SHOW_COLUMNS)] + [",".join(str(r[c]) for c in SHOW_COLUMNS) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    def _show_row(self, ch: Channel) -> dict[str, str]:
        row = {c: "" for c in SHOW_COLUMNS}
        row.update(
            {
                "uuid": ch.uuid,
                "direction": "outbound",
                "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch.created)),
                "created_epoch": str(int(ch.created)),
                "name": ch.name,
                "state": "CS_EXCHANGE_MEDIA"
                if ch.peer
                else ("CS_EXECUTE" if ch.parked else "CS_CONSUME_MEDIA"),
                "cid_name": ch.caller_id_name,
                "cid_num": ch.caller_id_number,
                "ip_addr": "127.0.0.1",
                "dest": ch.dest,
                "application": "park" if ch.parked else "",
                "dialplan": "XML",
                "context": "default",
                "read_codec": "PCMU",
                "read_rate": "8000",
                "read_bit_rate": "64000",
                "write_codec": "PCMU",
                "write_rate": "8000",
                "write_bit_rate": "64000",
                "hostname": self.switch.factory.hostname,
                "callstate": ch.callstate,
                "call_uuid": ch.uuid,
                "initial_cid_name": ch.caller_id_name,
                "initial_cid_num": ch.caller_id_number,
                "initial_ip_addr": "127.0.0.1",
                "initial_dest": ch.dest,
                "initial_dialplan": "XML",
                "initial_context": "default",
            }
        )
        return row

    def _api_status(self, arg: str) -> str:
        up = time.time() - self.switch.started_at
        days, rem = divmod(up, 86400)
        hours, rem = divmod(rem, 3600)
        minutes, secs = divmod(rem, 60)
        ms = (up - int(up)) * 1000
        n = len(self.switch.channels())
        total = self.engine.sessions_since_start
        mins = f"{int(minutes)} minute{'s' if int(minutes) != 1 else ''}"
        sec_s = f"{int(secs)} second{'s' if int(secs) != 1 else ''}"
        return (
            f"UP 0 years, {int(days)} days, {int(hours)} hours, {mins}, {sec_s}, {int(ms)} milliseconds, "
            "0 microseconds\n"
            "FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"
            f"{total} session(s) since startup\n"
            f"{n} session(s) - peak {max(n, 1)}, last 5min {n} \n"
            "0 session(s) per Sec out of max 30, peak 1, last 5min 0 \n"
            "1000 session(s) max\nmin idle cpu 0.00/99.00\nCurrent Stack Size/Max 240K/8192K\n"
        )

    def _api_version(self, arg: str) -> str:
        return VERSION

    def _api_global_getvar(self, arg: str) -> str:
        return self.switch.global_vars.get(arg.strip(), "")

    def _api_log(self, arg: str) -> str:
        return "+OK\n"

    def _api_uuid_dump(self, arg: str) -> str:
        parts = arg.split()
        ch = self._chan(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        headers = [
            ("Event-Name", "CHANNEL_DATA"),
            ("Channel-Name", ch.name),
            ("Unique-ID", ch.uuid),
            ("Channel-Call-State", ch.callstate),
        ]
        headers += [(f"variable_{k}", v) for k, v in {**ch.user_vars, **ch.extra_vars}.items() if v]
        if len(parts) > 1 and parts[1] == "json":
            return wire.serialize_json(headers).decode()
        return wire.serialize_plain(headers).decode()
