"""Channels of the stand-in switch and their life: originate, ring, answer, media, bridge, hang up.

``Engine`` owns the live channels.  Each originate runs in its own greenlet and
emits the captured event sequences (``sim.events`` segments) in the order the
real switch does for that outcome (``fs-captures/gateway/*.summary.txt``),
placing the BACKGROUND_JOB where the captures place it.  Every channel with
media is ticked by the switch's one media clock (``sim.media_clock``) once per
20 ms of media time: the company's (or desk phone's) audio goes to the audio
forks, recordings and the bridged peer, and each fork's frames are written to
its socket right after its channel's tick (non-blocking; ``sim.audio_fork``).
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import gevent.event
import gevent.pool
import numpy as np

from sim import audio
from sim.audio_fork import ForkError, ForkSession, flush_all
from sim.company import CompanyCall
from sim.events import Event, EventFactory
from sim.media_clock import MediaClock
from sim.phones import Phone
from sim.scenario import AudioRenderer, CompanyDirectory, Scenario, not_in_service

log = logging.getLogger(__name__)

TRUNK_GATEWAY = "trunk"
DEFAULT_ORIGINATE_TIMEOUT_S = 60
SETUP_DELAY_S = 0.05  # media seconds between INVITE and the far end's first reply (divided by speed)
REFUSE_DELAY_S = 0.05
DTMF_GAP_S = 0.15  # between digits of one uuid_send_dtmf (RFC 2833 duration + gap)
DTMF_DURATION = "2080"
_SILENT = np.zeros(audio.FRAME_SAMPLES, dtype=np.int16)  # DTMF-Duration the captured phone sent (samples)
REFUSE_CAUSE = {"busy": "USER_BUSY", "unavailable": "NORMAL_TEMPORARY_FAILURE", "sit": "UNALLOCATED_NUMBER"}
USAGE_ORIGINATE = (
    "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
    "[<cid_name>] [<cid_num>] [<timeout_sec>]\n"
)


def now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass(eq=False)
class Channel:
    uuid: str
    name: str
    dest: str
    family: str  # "gw" (company) or "desk"
    user_vars: dict[str, str]
    caller_id_name: str = ""
    caller_id_number: str = "0000000000"
    callstate: str = "DOWN"
    prev_callstate: str = "DOWN"
    hangup_cause: str = ""
    extra_vars: dict[str, str] = field(default_factory=dict)
    var_overrides: dict[str, str] = field(default_factory=dict)  # replace template values, never add
    var_snapshot: list[tuple[str, str]] = field(default_factory=list)
    times: dict[str, int] = field(default_factory=dict)
    state: str = "ringing"  # ringing | early | answered | hungup
    parked: bool = False
    originated: bool = False  # originate finished (+OK)
    peer: Channel | None = None
    bridge_role: str = ""
    forks: dict[str, ForkSession] = field(default_factory=dict)
    recordings: dict[str, list[np.ndarray]] = field(default_factory=dict)
    company: CompanyCall | None = None
    phone: Phone | None = None
    scenario: Scenario | None = None
    plays: list[list] = field(default_factory=list)  # [pcm, pos, path, app_uuid]
    last_read: np.ndarray | None = None
    gone: gevent.event.Event = field(default_factory=gevent.event.Event)
    media_on: bool = False  # the media clock ticks this channel (from answer or early media to hangup)
    created: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        """For log lines: our call id (hs_call_id, set by the worker) and the channel uuid."""
        call_id = self.user_vars.get("hs_call_id") or self.extra_vars.get("hs_call_id")
        return f"{call_id} leg {self.uuid}" if call_id else self.uuid

    @property
    def answered(self) -> bool:
        return "answered_us" in self.times

    @property
    def hungup(self) -> bool:
        return self.state == "hungup"

    def getvar(self, name: str) -> str | None:
        if name in self.extra_vars:
            return self.extra_vars[name] or None  # "" = unset with uuid_setvar <uuid> <var>
        if name in self.user_vars:
            return self.user_vars[name]
        builtins = {
            "uuid": self.uuid,
            "channel_name": self.name,
            "call_uuid": self.uuid,
            "direction": "outbound",
            "hangup_cause": self.hangup_cause or None,
            "caller_id_name": self.caller_id_name or None,
            "caller_id_number": self.caller_id_number,
        }
        if name in builtins:
            return builtins[name]
        for n, v in self.var_snapshot:
            if n == f"variable_{name}":
                return v
        return None


@dataclass
class Job:
    """One originate (api or bgapi): `finish(body)` delivers its result exactly once."""

    command: str
    arg: str
    job_uuid: str | None  # None for a blocking api originate
    emit: Callable[[Event], None]
    factory: EventFactory
    result: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)

    def finish(self, body: str) -> None:
        if self.result.ready():
            return
        self.emit(self.factory.api(self.command, self.arg))
        if self.job_uuid is not None:
            self.emit(self.factory.background_job(self.job_uuid, self.command, self.arg, body))
        self.result.set(body)


def split_args(text: str) -> list[str]:
    """switch_separate_string on spaces: single quotes group and are stripped; \\s unescapes."""
    out: list[str] = []
    cur = ""
    quoted = False
    have = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
            have = True
        elif ch == " " and not quoted:
            if have:
                out.append(cur)
            cur, have = "", False
        else:
            cur += ch
            have = True
    if have:
        out.append(cur)
    return out


def parse_dial_vars(url: str) -> tuple[dict[str, str], str]:
    """`{a=1,b=2}endpoint` -> ({a: 1, b: 2}, endpoint); `\\,` escapes a comma, `\\s` is a space."""
    variables: dict[str, str] = {}
    while url.startswith(("{", "[")):
        close = "}" if url[0] == "{" else "]"
        end = url.find(close)
        if end < 0:
            break
        body, url = url[1:end], url[end + 1 :]
        items, cur, i = [], "", 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == ",":
                cur += ","
                i += 2
                continue
            if body[i] == ",":
                items.append(cur)
                cur = ""
            else:
                cur += body[i]
            i += 1
        items.append(cur)
        for item in items:
            if "=" in item:
                k, v = item.split("=", 1)
                variables[k.strip()] = v.replace("\\s", " ")
    return variables, url


class Engine:
    """All channels of one switch and what happens to them."""

    def __init__(
        self,
        factory: EventFactory,
        emit: Callable[[Event], None],
        speed: float,
        companies: CompanyDirectory,
        phones: dict[str, Phone],
        renderer: AudioRenderer | None = None,
        sip_domain: str = "127.0.0.1",
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.factory = factory
        self.emit = emit
        self.speed = speed
        self.companies = companies
        self.phones = phones
        self.renderer = renderer or AudioRenderer()
        self.sip_domain = sip_domain
        self.channels: dict[str, Channel] = {}
        self._jobs: dict[str, Job] = {}
        self.pool = gevent.pool.Group()
        self.sessions_since_start = 0
        self.clock: MediaClock[Channel] = MediaClock(speed, self._media_wake, self.spawn)

    # -- helpers ----------------------------------------------------------------------------------
    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds) / self.speed

    def spawn(self, fn: Callable, *args: object) -> gevent.Greenlet:
        return self.pool.spawn(fn, *args)

    def emit_all(
        self,
        events: list[Event],
        hooks: dict[str, Callable[[], None]] | None = None,
        hook_uuid: str | None = None,
    ) -> None:
        pending = dict(hooks or {})
        for ev in events:
            self.emit(ev)
            key = ev.name
            if key in pending and (hook_uuid is None or ev.get("Unique-ID") == hook_uuid):
                pending.pop(key)()
        for fn in pending.values():
            fn()

    def get(self, uuid: str) -> Channel | None:
        ch = self.channels.get(uuid)
        return ch if ch is not None and not ch.hungup else None

    def shutdown(self) -> None:
        self.clock.stop()
        for ch in list(self.channels.values()):
            for fork in ch.forks.values():
                fork.kill()
        self.pool.kill(block=True, timeout=2)

    # -- originate ---------------------------------------------------------------------------------
    def originate(self, arg: str, job: Job) -> None:
        """Runs in its own greenlet; always ends with job.finish()."""
        try:
            self._originate(arg, job)
        except Exception:
            log.exception("originate %s failed inside the simulator", arg)
            job.finish("-ERR NORMAL_TEMPORARY_FAILURE\n")
            for uuid, j in list(self._jobs.items()):
                if j is job and uuid in self.channels:
                    self.hangup(self.channels[uuid], "NORMAL_TEMPORARY_FAILURE")

    def _originate(self, arg: str, job: Job) -> None:
        args = split_args(arg)
        if len(args) < 2 or len(args) > 7:
            job.result.set(USAGE_ORIGINATE)
            if job.job_uuid is not None:
                self.emit(self.factory.background_job(job.job_uuid, "originate", arg, USAGE_ORIGINATE))
            return
        variables, endpoint = parse_dial_vars(args[0])
        timeout = DEFAULT_ORIGINATE_TIMEOUT_S
        for raw in (variables.get("originate_timeout"), args[6] if len(args) > 6 else None):
            if raw:
                try:
                    timeout = int(float(raw))
                except ValueError:
                    pass
        cid_name = variables.get("origination_caller_id_name", args[4] if len(args) > 4 else "")
        cid_num = variables.get("origination_caller_id_number", args[5] if len(args) > 5 else "")
        parts = endpoint.split("/")
        if parts[0] == "sofia" and len(parts) >= 4 and parts[1] == "gateway":
            if parts[2] != TRUNK_GATEWAY:
                job.finish("-ERR INVALID_GATEWAY\n")
                return
            self._company_call(parts[3], variables, timeout, cid_name, cid_num, job)
        elif parts[0] == "sofia" and len(parts) >= 3:
            # a direct SIP URI: nothing answers on this loopback-only stand-in (like a closed UDP port)
            job.finish("-ERR NORMAL_TEMPORARY_FAILURE\n")
        elif parts[0] == "user" and len(parts) >= 2:
            ext = parts[1].split("@", 1)[0]
            self._desk_call(ext, variables, timeout, cid_name, cid_num, job)
        elif parts[0] == "error" and len(parts) >= 2:
            job.finish(f"-ERR {parts[1].upper()}\n")
        else:
            job.finish("-ERR CHAN_NOT_IMPLEMENTED\n")

    def _new_channel(
        self,
        name: str,
        dest: str,
        family: str,
        variables: dict[str, str],
        cid_name: str,
        cid_num: str,
        job: Job,
    ) -> Channel:
        uuid = variables.get("origination_uuid") or str(uuidlib.uuid4())
        ch = Channel(
            uuid=uuid,
            name=name,
            dest=dest,
            family=family,
            user_vars=dict(variables),
            caller_id_name=cid_name,
            caller_id_number=cid_num or "0000000000",
        )
        ch.times["created_us"] = now_us()
        self.channels[uuid] = ch
        self._jobs[uuid] = job
        self.sessions_since_start += 1
        return ch

    def _wait(self, ch: Channel, seconds: float) -> bool:
        """Wait scenario seconds; True if the channel went away meanwhile."""
        return ch.gone.wait(self.scaled(seconds)) or ch.hungup

    def _company_call(
        self, digits: str, variables: dict[str, str], timeout: int, cid_name: str, cid_num: str, job: Job
    ) -> None:
        sc = self.companies.lookup(digits) or not_in_service(digits)
        early = "early_media" in sc.data
        refused = sc.outcome in ("busy", "unavailable") or (sc.outcome == "sit" and not early)
        company = None if refused else CompanyCall(sc, self.renderer)
        ch = self._new_channel(f"sofia/external/{digits}", digits, "gw", variables, cid_name, cid_num, job)
        ch.scenario = sc
        ignore_early = variables.get("ignore_early_media", "false").lower() == "true"
        log.info("call %s: dialing %s (%s, outcome %s)", ch.label, digits, sc.name, sc.outcome)
        self.emit_all(self.factory.segment("gw.setup", {"a": ch}))
        if refused:
            if self._wait(ch, REFUSE_DELAY_S):
                return
            self._refuse(ch, REFUSE_CAUSE[sc.outcome], job)
            return
        if self._wait(ch, SETUP_DELAY_S):
            return
        ch.company = company
        assert company is not None
        deadline = time.monotonic() + timeout / self.speed
        if early:
            ch.state = "early"
            ch.times["progress_media_us"] = now_us()
            self.emit_all(self.factory.segment("gw.early", {"a": ch}))
            self._start_media(ch)
            if not ignore_early:
                self._succeed(ch, job)
        else:
            ch.times["progress_us"] = now_us()
            self.emit_all(self.factory.segment("gw.ringing", {"a": ch}))
        if sc.outcome == "sit":
            # play the whole announcement as early media, then the carrier refuses the call
            while not company.early_done:
                if ch.gone.wait(0.02 / self.speed) or ch.hungup:
                    return
                if time.monotonic() >= deadline:
                    self._hangup_unanswered(ch, "NO_ANSWER", job)
                    return
            self._refuse(ch, "UNALLOCATED_NUMBER", job)
            return
        remaining = max(0.0, deadline - time.monotonic())
        ring_wall = sc.ring_seconds / self.speed
        if sc.outcome == "answer" and ring_wall <= remaining:
            if ch.gone.wait(ring_wall) or ch.hungup:
                return
            self._answer(ch, job)
            return
        if ch.gone.wait(remaining) or ch.hungup:
            return
        self._hangup_unanswered(ch, "NO_ANSWER", job)

    def _answer(self, ch: Channel, job: Job) -> None:
        segs = self.factory.segment("gw.answer", {"a": ch}, skip=("CODEC",) if ch.state == "early" else ())
        ch.times["answered_us"] = now_us()
        ch.state = "answered"
        assert ch.company is not None
        ch.company.answer()
        log.info("call %s: company answered", ch.label)
        self.emit_all(segs)
        if not ch.originated:
            self._succeed(ch, job)
        self._start_media(ch)

    def _succeed(self, ch: Channel, job: Job) -> None:
        ch.originated = True
        job.finish(f"+OK {ch.uuid}\n")
        ch.parked = True
        self.emit_all(self.factory.segment("gw.park", {"a": ch}))

    def _refuse(self, ch: Channel, cause: str, job: Job) -> None:
        ch.hangup_cause = cause
        ch.times["hangup_us"] = now_us()
        events = self.factory.segment(f"gw.refuse.{cause}", {"a": ch})
        ch.state = "hungup"
        hooks = {} if ch.originated else {"CHANNEL_HANGUP_COMPLETE": lambda: job.finish(f"-ERR {cause}\n")}
        log.info("call %s: refused with %s", ch.label, cause)
        self.emit_all(events, hooks)
        self._cleanup(ch)

    def _hangup_unanswered(self, ch: Channel, cause: str, job: Job | None) -> None:
        if ch.hungup:
            return
        ch.hangup_cause = cause
        ch.times["hangup_us"] = now_us()
        seg = "gw.timeout.early" if ch.state == "early" else "gw.timeout.ringing"
        skip = ("CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE")
        events = self.factory.segment(seg, {"a": ch}, skip=skip)
        ch.state = "hungup"
        hooks = {}
        if job is not None and not ch.originated:
            hooks = {"CHANNEL_HANGUP": lambda: job.finish(f"-ERR {cause}\n")}
        log.info("call %s: not answered (%s)", ch.label, cause)
        self.emit_all(events, hooks)
        self._cleanup(ch)

    # -- desk phones ---------------------------------------------------------------------------------
    def _desk_call(
        self, ext: str, variables: dict[str, str], timeout: int, cid_name: str, cid_num: str, job: Job
    ) -> None:
        self.emit(self.factory.api("sofia_contact", f"*/{ext}@{self.sip_domain}"))
        self.emit(self.factory.api("verto_contact", f"{ext}@{self.sip_domain}"))
        phone = self.phones.get(ext)
        if phone is None:
            job.finish("-ERR SUBSCRIBER_ABSENT\n")
            return
        if not phone.registered:
            job.finish("-ERR USER_NOT_REGISTERED\n")
            return
        ch = self._new_channel(
            f"sofia/internal/{ext}@127.0.0.1:{phone.port}", ext, "desk", variables, cid_name, cid_num, job
        )
        ch.phone = phone
        phone.calls.append(ch.uuid)
        roles = {"b": ch}
        self.emit_all(self.factory.segment("desk.setup", roles))
        if self._wait(ch, SETUP_DELAY_S):
            return
        ch.times["progress_us"] = now_us()
        self.emit_all(self.factory.segment("desk.ringing", roles))
        ring = phone.answer_after if phone.mode == "answer" else float("inf")
        if ch.gone.wait(min(ring / self.speed, timeout / self.speed)) or ch.hungup:
            return
        if phone.mode != "answer" or ring > timeout:
            self._hangup_unanswered(ch, "NO_ANSWER", job)
            return
        ch.times["answered_us"] = now_us()
        ch.state = "answered"
        self.emit_all(self.factory.segment("desk.answer", roles))
        log.info("call %s: desk %s answered", ch.label, ext)
        ch.originated = True
        job.finish(f"+OK {ch.uuid}\n")
        ch.parked = True
        self.emit_all(self.factory.segment("desk.park", roles))
        phone.answered_event.set()
        self._start_media(ch)
        if phone.dtmf:
            self.spawn(self._desk_dtmf, ch)
        if phone.hangup_after is not None:
            self.spawn(self._desk_hangs_up, ch, phone.hangup_after)

    def _desk_hangs_up(self, ch: Channel, seconds: float) -> None:
        if not self._wait(ch, seconds):
            log.info("call %s: the user at desk %s hangs up", ch.label, ch.dest)
            self.hangup(ch, "NORMAL_CLEARING", "remote")

    def _desk_dtmf(self, ch: Channel) -> None:
        assert ch.phone is not None
        # press after the whisper (a prompt played to the phone), or DTMF_DELAY_S after the answer
        if ch.gone.wait(self.scaled(0.3)):
            return
        while ch.plays and not ch.hungup:
            if ch.gone.wait(0.02 / self.speed):
                return
        if not ch.plays and ch.gone.wait(self.scaled(0.7)):
            return
        for digit in ch.phone.dtmf:
            if ch.hungup:
                return
            ev = self.factory.one(
                "sip.dtmf",
                0,
                ch,
                overrides={"DTMF-Digit": digit, "DTMF-Duration": DTMF_DURATION, "DTMF-Source": "RTP"},
            )
            self.emit(ev)
            if ch.gone.wait(self.scaled(DTMF_GAP_S)):
                return

    # -- media ----------------------------------------------------------------------------------------
    def _start_media(self, ch: Channel) -> None:
        if not ch.media_on and not ch.hungup:
            ch.media_on = True
            self.clock.add(ch)

    def _media_wake(self, chans: list[Channel], frames: int) -> list[Channel]:
        """One wake-up of the media clock: `frames` frames for each channel, then its forks' writes."""
        ended = []
        forks: list[ForkSession] = []
        for ch in chans:
            if ch.hungup:
                ended.append(ch)
                continue
            for _ in range(frames):
                if not self._media_tick(ch):
                    ended.append(ch)
                    break
            if ch.forks:
                forks += ch.forks.values()
        flush_all(forks)
        return ended

    def _media_tick(self, ch: Channel) -> bool:
        """One 20 ms frame of the channel; False when the channel's media ends."""
        cause = None
        if ch.company is not None:
            if ch.state == "early":
                read = ch.company.early_frame()
            else:
                read, cause = ch.company.next_frame()
        else:
            read = _SILENT
        write = self._next_play_frame(ch) if ch.plays else None
        peer = ch.peer
        if write is None and peer is not None:
            write = peer.last_read if peer.last_read is not None else _SILENT
        ch.last_read = read
        if ch.company is not None and write is not None:
            ch.company.hear(write)
        if peer is not None and peer.phone is not None and ch.company is not None:
            peer.phone.receive(read)  # the company's audio reaches the bridged desk phone
        for fork in ch.forks.values():
            fork.push(read, write)
        for frames in ch.recordings.values():
            frames.append(read)
        if cause is not None:
            self.spawn(self.hangup, ch, cause, "remote")
            return False
        return not ch.hungup

    def _next_play_frame(self, ch: Channel) -> np.ndarray | None:
        while ch.plays:
            item = ch.plays[0]
            pcm, pos = item[0], item[1]
            if pos < len(pcm):
                item[1] = pos + audio.FRAME_SAMPLES
                chunk = pcm[pos : pos + audio.FRAME_SAMPLES]
                if len(chunk) < audio.FRAME_SAMPLES:
                    chunk = np.concatenate(
                        [chunk, np.zeros(audio.FRAME_SAMPLES - len(chunk), dtype=np.int16)]
                    )
                return chunk
            ch.plays.pop(0)
            self.spawn(self._playback_done, ch, item[2], item[3])
        return None

    # -- commands on live channels ------------------------------------------------------------------------
    def broadcast(self, ch: Channel, path: str, app_uuid: str | None = None) -> None:
        try:
            pcm = audio.load_playable(path)
        except audio.AudioError as exc:
            log.info("call %s: broadcast %s failed: %s", ch.label, path, exc)
            pcm = np.zeros(0, dtype=np.int16)
        app_uuid = app_uuid or str(uuidlib.uuid4())
        events = self.factory.segment(
            "sip.playback_start",
            {"a": ch},
            overrides={
                "Application-Data": path,
                "Playback-File-Path": path,
                "Playback-File-Type": _file_type(path),
                "Application-UUID": app_uuid,
            },
        )
        self.emit_all(events)
        ch.plays.append([pcm, 0, path, app_uuid])
        self._start_media(ch)

    def _playback_done(self, ch: Channel, path: str, app_uuid: str, status: str = "done") -> None:
        if ch.hungup:
            return
        self.emit_all(
            self.factory.segment(
                "sip.playback_stop",
                {"a": ch},
                overrides={
                    "Application-Data": path,
                    "Playback-File-Path": path,
                    "Playback-File-Type": _file_type(path),
                    "Application-UUID": app_uuid,
                    "Application-Response": "FILE PLAYED",
                    "Playback-Status": status,
                },
            )
        )

    def break_playback(self, ch: Channel, all_: bool = False) -> None:
        """uuid_break: stop the current prompt (and, with `all`, the queued ones)."""
        stopped = ch.plays[:] if all_ else ch.plays[:1]
        del ch.plays[: len(stopped)]
        for item in stopped:
            self.spawn(self._playback_done, ch, item[2], item[3], "break")

    def send_dtmf(self, ch: Channel, digits: str) -> None:
        for d in digits:
            if ch.hungup:
                return
            if d not in "0123456789*#ABCDabcdwW":
                continue
            if d in "wW":
                if ch.gone.wait(self.scaled(0.5 if d == "w" else 1.0)):
                    return
                continue
            if ch.company is not None:
                ch.company.dtmf(d)
            if ch.gone.wait(self.scaled(DTMF_GAP_S)):
                return

    def bridge(self, a: Channel, b: Channel) -> None:
        a.peer, b.peer = b, a
        a.bridge_role, b.bridge_role = "a", "b"
        a.parked = b.parked = False
        a.times["bridged_us"] = b.times["bridged_us"] = now_us()
        self.emit_all(self.factory.segment("bridge", {"a": a, "b": b}))
        for ch, other in ((a, b), (b, a)):
            if ch.company is not None:
                ch.company.bridge()
            if ch.phone is not None:
                ch.phone.bridged_to = other.uuid
                ch.phone.bridged_event.set()
        log.info("call %s: bridged to %s", a.label, b.uuid)

    def start_fork(
        self, ch: Channel, url: str, mix: str, rate: int, metadata: str | None, bugname: str = "audio_fork"
    ) -> None:
        if bugname in ch.forks:
            raise ForkError("bug already attached")

        def emit(subclass: str, body: str | None) -> None:
            if subclass == "mod_audio_fork::connect" and not ch.hungup:
                self.emit(self.factory.one("gw.fork_connect", 0, ch))
            elif not ch.hungup or subclass == "mod_audio_fork::connect_failed":
                self.emit(self.factory.one("gw.fork_connect", 0, ch, subclass=subclass, body=body))

        fork = ForkSession(ch.uuid, url, mix, rate, metadata, emit, self.speed)
        ch.forks[bugname] = fork
        self.emit(self.factory.one("gw.media_bug_start", 0, ch))
        fork.start()
        if ch.state != "ringing":
            self._start_media(ch)

    def stop_fork(self, ch: Channel, bugname: str, text: str | None) -> bool:
        fork = ch.forks.pop(bugname, None)
        if fork is None:
            return False
        fork.stop(text)
        self.emit(self.factory.one("sip.media_bug_stop", 0, ch))
        return True

    def record(self, ch: Channel, action: str, path: str) -> bool:
        if action == "start":
            ch.recordings[path] = []
            ev = self.factory.one("gw.media_bug_start", 0, ch, event_name="RECORD_START")
            ev.headers = _replace_bug_headers(ev.headers, path, "record_session")
            self.emit(ev)
            return True
        if action == "stop":
            paths = list(ch.recordings) if path == "all" else [path]
            if not any(p in ch.recordings for p in paths):
                return False
            for p in paths:
                self._finish_recording(ch, p)
            return True
        return False

    def _finish_recording(self, ch: Channel, path: str) -> None:
        frames = ch.recordings.pop(path, None)
        if frames is None:
            return
        pcm = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            audio.write_wav(path, pcm)
        except OSError as exc:
            log.warning("call %s: cannot write recording %s: %s", ch.label, path, exc)
        ev = self.factory.one("sip.media_bug_stop", 0, ch, event_name="RECORD_STOP")
        ev.headers = _replace_bug_headers(ev.headers, path, "record_session")
        self.emit(ev)

    # -- hangup ----------------------------------------------------------------------------------------------
    def hangup(self, ch: Channel, cause: str = "NORMAL_CLEARING", origin: str = "local") -> None:
        if ch.hungup:
            return
        if not ch.originated and ch.state in ("ringing", "early"):
            self._hangup_unanswered(ch, cause, self._job_of(ch))
            return
        peer = ch.peer
        ch.hangup_cause = cause
        ch.times["hangup_us"] = now_us()
        if origin == "remote":  # the far end sent BYE (the company, or the user at the desk phone)
            ch.var_overrides["sip_hangup_disposition"] = "recv_bye"
        if peer is not None and not peer.hungup:
            a, b = (ch, peer) if ch.bridge_role == "a" else (peer, ch)
            peer.hangup_cause = "NORMAL_CLEARING"
            peer.times["hangup_us"] = now_us()
            skip = () if a.forks else ("MEDIA_BUG_STOP",)
            events = self.factory.segment("hangup.bridged", {"a": a, "b": b}, skip=skip)
            ch.state = peer.state = "hungup"
            ch.gone.set()
            peer.gone.set()
            log.info("call %s: hangup %s (bridged to %s)", ch.label, cause, peer.uuid)
            self.emit_all(events)
            self._cleanup(ch)
            self._cleanup(peer)
            return
        seg = "gw.hangup.parked_remote" if origin == "remote" else "gw.hangup.parked_local"
        if ch.family == "desk":
            seg = "desk.hangup.parked"
        skip_l = [] if ch.forks else ["MEDIA_BUG_STOP"]
        if not ch.parked:
            skip_l += ["CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE"]
        events = self.factory.segment(seg, {"a": ch}, skip=skip_l)
        ch.state = "hungup"
        ch.gone.set()
        log.info("call %s: hangup %s (%s)", ch.label, cause, origin)
        self.emit_all(events)
        self._cleanup(ch)

    def _job_of(self, ch: Channel) -> Job | None:
        return self._jobs.get(ch.uuid)

    def _cleanup(self, ch: Channel) -> None:
        ch.state = "hungup"
        ch.gone.set()
        for fork in ch.forks.values():
            fork.stop(None)
        ch.forks.clear()
        for path in list(ch.recordings):
            self._finish_recording(ch, path)
        self.channels.pop(ch.uuid, None)
        self._jobs.pop(ch.uuid, None)

    def hupall(self, cause: str, var: str | None = None, value: str | None = None) -> None:
        for ch in list(self.channels.values()):
            if var is not None and ch.getvar(var) != value:
                continue
            self.hangup(ch, cause)


def _file_type(path: str) -> str:
    """Playback-File-Type as FreeSWITCH reports it: only for stream URLs, absent ("") for files."""
    for kind in ("tone_stream", "local_stream", "silence_stream"):
        if path.startswith(kind + "://"):
            return kind
    return ""


def _replace_bug_headers(headers: list[tuple[str, str]], path: str, function: str) -> list[tuple[str, str]]:
    """RECORD_START/STOP: the channel data, then Record-File-Path at the bottom (switch_ivr_async.c)."""
    out = [(n, v) for n, v in headers if not n.startswith("Media-Bug-")]
    out.append(("Record-File-Path", path))
    return out
