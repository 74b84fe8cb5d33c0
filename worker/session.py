"""One hold-slayer call, from originate to hangup: `CallSession.run()`.

A session owns up to two legs on one switch (the company leg U and the desk leg
D) and three helper greenlets that feed one inbox:

* the ESL pump: events for U and D (subscribed BEFORE each originate),
* its audio: the worker's AudioHub (worker/audio_hub.py) reads every call's mod_audio_fork
  frames, analyses them in one detector bank and calls `on_audio` with this call's events,
* control messages routed from `hs:control:<call_id>` by the worker's ControlHub.

The main greenlet is a straight-line script over that inbox (`_wait`), so the
call's story reads top to bottom: dial, navigate, hold, human, connect, bridge,
follow until hangup.  Whatever happens (exception, cancel, shutdown), `run()`'s
finally kills every leg it owns that is still up and leaves the Call final.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.queue
import redis

from worker import db
from worker.config import TRUNK_GATEWAY, VAR_CALL_ID, VAR_ROLE, VAR_WORKER, Settings
from worker.errors import CallInterrupted, EslDisconnected, EslError, EslTimeout
from worker.esl_protocol import originate_cmd, safe_var_value
from worker.prompts import Prompts

log = logging.getLogger(__name__)

# --- tunables (seconds unless said otherwise) ------------------------------------
ORIGINATE_SLACK_S = 15.0  # bgapi originate waits ring timeout + this for its BACKGROUND_JOB
PROMPT_END_SILENCE_S = 0.7  # media seconds of silence after speech that end an IVR prompt
HOLD_MUSIC_S = 3.0  # media seconds of music that mean the menus are over (flow-less navigation)
MUSIC_SHARE = 0.25  # ... or this share of a "prompt" (and >= 1 s) being music
PROMPT_MAX_S = 30.0  # media seconds a LISTEN waits for a prompt to end before moving on
# Wall seconds of audio the switch may hold that we have not read yet (mod_audio_fork buffers 2 s):
# the company hears our key now, we hear its answer up to that much later, so a wait that ends for
# lack of a prompt lasts at least this long in wall time too (the same at real time; at the test
# switch's x20 a 30 s media wait is 1.5 s of wall time, shorter than such a backlog).
FORK_BACKLOG_WALL_S = 3.0
TICK_S = 0.1  # media seconds between ticks while a media-time wait (prompt end, WAIT step) runs
HOLD_TICK_S = 1.0  # media seconds between ticks while holding (confirmation timeout, job meta)
CONFIRM_MAX_S = 15.0  # media seconds a likely human may stay unconfirmed before we keep holding
# Call.hold_seconds's arguments to db.hold_span, in its order
HOLD_TIMES = ("hold_started_at", "human_detected_at", "bridged_at", "ended_at")
META_EVERY_S = 10.0  # wall seconds between job.meta refreshes while holding
MEDIA_STALL_S = 15.0  # wall seconds without any audio after which a media-time wait gives up
SCREEN_TIMEOUT_S = 15.0  # wall seconds the user has to press 1 when screening is on
DESK_RETRIES = 1  # extra rings of the same device(s) after a no-answer round
RECONNECT_WAIT_S = 20.0  # wall seconds to wait for a dropped ESL connection to come back
MAX_RETRIES = 10  # options.retries / call_back_on_agent_hangup upper bound
MAX_BACKOFF_S = 3600.0  # options.retry_backoff_s upper bound (the first wait; doubled each retry)
CONTROL_CHANNEL = "hs:control:{}"
CONTROL_PATTERN = "hs:control:*"

# FreeSWITCH hangup causes -> our final status when the company leg never answered.
ORIGINATE_CAUSES = {
    "USER_BUSY": "busy",
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ORIGINATOR_CANCEL": "no_answer",
    "UNALLOCATED_NUMBER": "sit",
    "NO_ROUTE_DESTINATION": "sit",
    "INVALID_NUMBER_FORMAT": "sit",
    "NUMBER_CHANGED": "sit",
}
DESK_UNAVAILABLE_CAUSES = {
    "USER_NOT_REGISTERED",
    "SUBSCRIBER_ABSENT",
    "UNALLOCATED_NUMBER",
    "NO_ROUTE_DESTINATION",
}
DETECTOR_FINAL = {"voicemail": "voicemail", "sit": "sit", "busy": "busy"}


@dataclass
class PromptEnd:
    """Pure: a prompt is over once sound was heard and the detector's state has been silence for
    PROMPT_END_SILENCE_S media seconds since (sound again restarts the count)."""

    heard_speech: bool = False
    quiet_since: float | None = None  # media time the silence after the sound began

    def state(self, state: str, t_media: float) -> None:
        if state == "silence":
            if self.heard_speech and self.quiet_since is None:
                self.quiet_since = t_media
        else:
            self.heard_speech = True
            self.quiet_since = None

    def ended(self, now: float) -> bool:
        return self.quiet_since is not None and now - self.quiet_since >= PROMPT_END_SILENCE_S


def originate_status(cause: str) -> str:
    """Final status for a company leg that failed before answer (pure)."""
    return ORIGINATE_CAUSES.get(cause.strip().upper(), "failed")


RETRY_STATUSES = ("busy", "no_answer")


def retry_options(options: dict[str, Any]) -> tuple[int, float, int]:
    """(retries, retry_backoff_s, call-backs after the agent hung up first) from the request options;
    ValueError with a clear message when out of range (pure)."""
    try:
        retries = int(options.get("retries", 0) or 0)
        backoff = float(options.get("retry_backoff_s", 30) if options.get("retry_backoff_s") != "" else 30)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"options.retries / retry_backoff_s must be numbers: {exc}") from exc
    if not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"options.retries must be 0..{MAX_RETRIES}, got {retries}")
    if not 0 <= backoff <= MAX_BACKOFF_S:
        raise ValueError(f"options.retry_backoff_s must be 0..{MAX_BACKOFF_S:g}, got {backoff:g}")
    back = options.get("call_back_on_agent_hangup", False)
    if isinstance(back, str):
        back = back.strip().lower() in ("1", "true", "yes")
    redials = 1 if back is True else max(0, min(MAX_RETRIES, int(back or 0)))
    return retries, backoff, redials


def recording_path(recordings_dir: str, call_id: str, when: Any) -> str:
    """RECORDINGS_DIR/YYYY/MM/DD/<call_id>.wav as an absolute path (the switch has another cwd) (pure)."""
    if not call_id or "/" in call_id or call_id.startswith("."):
        raise ValueError(f"bad call id for a recording: {call_id!r}")
    base = os.path.abspath(recordings_dir or "recordings")
    return os.path.join(base, f"{when:%Y}", f"{when:%m}", f"{when:%d}", f"{call_id}.wav")


def bgapi_result(body: str) -> tuple[bool, str]:
    """BACKGROUND_JOB body `+OK <uuid>` / `-ERR <CAUSE>` -> (ok, uuid-or-cause) (pure)."""
    text = (body or "").strip()
    if text.startswith("+OK"):
        return True, text[3:].strip()
    if text.startswith("-ERR"):
        return False, text[4:].strip().split()[0] if text[4:].strip() else "UNKNOWN"
    return False, text or "UNKNOWN"


def parse_control(raw: bytes | str) -> dict[str, Any]:
    """A control message `{"action": "hangup"}` / `{"action": "dtmf", "digits": "12"}`; ValueError if bad."""
    try:
        msg = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"control message is not JSON: {raw!r}") from exc
    if not isinstance(msg, dict) or msg.get("action") not in ("hangup", "dtmf"):
        raise ValueError(f"control message needs action hangup|dtmf: {raw!r}")
    if msg["action"] == "dtmf":
        digits = str(msg.get("digits", ""))
        if not digits or any(c not in "0123456789*#ABCDabcdwW" for c in digits) or len(digits) > 64:
            raise ValueError(f"bad DTMF digits: {digits!r}")
        msg["digits"] = digits
    return msg


def looks_like_ivr(transcript: str) -> bool:
    """A menu or a callback offer (keys to press), as opposed to a person talking (pure).  A hold
    message is not enough: "thanks for holding, this is Sam" is a person."""
    from worker.menu import parse_menu

    return bool(parse_menu(transcript))


# --- messages in a session's inbox ---------------------------------------------------
@dataclass
class Msg:
    kind: str  # esl | det | tick | ctl | originate | fork_closed | esl_down | esl_up | stt_done
    data: Any = None
    leg: str = ""  # "company" | "desk" for esl events
    t_arrival: float = 0.0  # perf_counter when the frame arrived (det only; lag metric)
    t_media: float = 0.0  # media seconds since the fork started (det only)
    gen: int = 0  # which detector decided it (det only): decisions of a replaced detector are dropped


class Ended(Exception):  # noqa: N818 - control flow: the call reached a final status
    def __init__(self, status: str, reason: str = "", cause: str = "") -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.cause = cause


@dataclass
class Runtime:
    """Everything a call needs from its worker process (built by `python -m worker`)."""

    settings: Settings
    redis: redis.Redis | None
    clients: list[Any]  # worker.esl.EslClient, one per switch
    fork_server: Any  # worker.audio_fork.ForkServer
    prompts: Prompts
    worker_id: str
    detector_factory: Callable[[str, Any], Any] | None = None  # (number, heard fingerprints) -> detector
    transcriber_factory: Callable[[], Any] | None = None  # -> worker.stt Transcriber (LISTEN steps)
    esl_pool: Any = None  # worker.esl.EslPool: picks the least-loaded connected switch
    active: dict[str, CallSession] = field(default_factory=dict)
    on_lag: Callable[[float], None] | None = None  # frame arrival -> detector decision, seconds
    audio_hub: Any = None  # worker.audio_hub.AudioHub: every call's audio (a default one if None)
    _rr: int = 0

    def __post_init__(self) -> None:
        """Load the speech model before the first call: loading it mid-call stalls every call's audio."""
        if self.audio_hub is None:
            from worker.audio_hub import AudioHub

            self.audio_hub = AudioHub(on_lag=self._lag)
        if self.transcriber_factory is None:
            return
        try:
            warm = getattr(self.transcriber_factory(), "warm", None)
            if callable(warm):
                warm()
        except Exception as exc:  # noqa: BLE001 - navigation degrades to detector-only, calls still work
            log.warning("speech recognition could not start: %s", exc)

    def _lag(self, seconds: float) -> None:
        if self.on_lag is not None:
            self.on_lag(seconds)

    def pick_client(self) -> Any:
        """The least-loaded connected switch (EslPool.pick), else round robin over `clients`."""
        if self.esl_pool is not None:
            return self.esl_pool.pick()
        if not self.clients:
            raise EslDisconnected("no ESL connection configured")
        up = [c for c in self.clients if getattr(c, "connected", True)]
        pool = up or self.clients
        self._rr = (self._rr + 1) % len(pool)
        return pool[self._rr]


class CallSession:
    def __init__(self, rt: Runtime, call: db.Call, job: Any = None) -> None:
        self.rt = rt
        self.s = rt.settings
        self.call_id: str = call.id
        self.number: str = call.number
        self.call = call
        self.job = job
        self.options: dict[str, Any] = call.options_json
        self.inbox: gevent.queue.Queue = gevent.queue.Queue()
        self.client: Any = None
        self.company_uuid = ""
        self.desk_uuid = ""
        self.legs_up: dict[str, bool] = {}  # uuid -> still up as far as we know
        self.company_answered = False
        self.company_cause = ""
        self.fork_started = False
        self.detector: Any = None
        self.audio_rate: int = self.s.audio_fork_rate
        self.media_t = 0.0  # media seconds fed to the detector
        self.tick_every: float | None = None  # media seconds between ticks; None: no ticks (see _ticks)
        self.next_tick = 0.0
        self.last_state = ""
        self.prompt_played = False
        self.greenlets: list[gevent.Greenlet] = []
        self.status = call.status
        self.fork_stream: Any = None
        self.navigated = False
        self.det_gen = 0
        self.stt: Any = None  # worker.stt.StreamingTranscriber, only for flows with LISTEN steps
        self.meta_saved_at = 0.0
        self.row_times: dict[str, Any] = {}    # the HOLD_TIMES this session wrote to its Call row
        self.human_t = 0.0
        self.det_offset = 0.0  # media time at which the current detector started
        self.transfer_to = call.transfer_to
        self.nav_state = ""  # the detector state last handled by flow-less navigation
        self.seen_t = 0.0  # media time of the last detector message / tick handled (navigation)
        self.pushed: list[Msg] = []  # messages handed back to the next _next() (navigation -> hold)
        self.max_hold_s = int(
            min(self.s.max_hold_s, int(self.options.get("max_hold_s") or self.s.max_hold_s))
        )
        flow_name = ""
        if call.call_flow_id:
            with db.database.connection_context():
                flow = db.CallFlow.get_or_none(db.CallFlow.id == call.call_flow_id)
                flow_name = flow.name if flow is not None else ""
        self.company_name = str(self.options.get("company_name") or flow_name or call.number)

    # === the story ===========================================================================
    def run(self) -> dict[str, Any]:
        self.rt.active[self.call_id] = self
        final: Ended | None = None
        try:
            self._update(
                status="dialing",
                worker_id=self.rt.worker_id,
                started_at=db.utcnow(),
                job_id=getattr(self.job, "id", "") or "",
            )
            self._event("call.dialing", {"number": self.number, "worker": self.rt.worker_id})
            retries, backoff_s, redials = retry_options(self.options)
            steps = self._flow_steps()
            while True:
                if not steps and self.rt.transcriber_factory is not None:
                    from worker.stt import StreamingTranscriber

                    # From the first frame on: transcript times are media times, no prompt start is lost.
                    self.stt = StreamingTranscriber(self.rt.transcriber_factory(), self.s.audio_fork_rate)
                self._dial_with_retries(retries, backoff_s)
                try:
                    if steps:
                        self._run_flow(steps)
                    else:  # no stored flow: understand the menus from their transcripts, then hold
                        self._navigate_menus()
                        self._hold_until_human()
                        self._connect_user()
                    break
                except Ended as e:
                    if e.status != "agent_hung_up" or redials <= 0:
                        raise
                    redials -= 1
                    log.info("call %s: the agent hung up first: calling back in", self.call_id)
                    self._event("call.redial", {"after": e.status, "reason": e.reason})
                    self._reset_for_redial()
            self._follow_bridge()
        except Ended as e:
            final = e
        except CallInterrupted as e:
            log.warning("call %s: interrupted (%s)", self.call_id, e.reason)
            final = Ended("failed", e.reason)
        except EslDisconnected as e:
            log.error("call %s: switch connection lost: %s", self.call_id, e)
            final = Ended("failed", "esl_disconnected")
        except gevent.GreenletExit:
            final = Ended("failed", "worker_shutdown")
            raise
        except Exception as e:
            log.exception("call %s: failed", self.call_id)
            final = Ended("failed", f"{e.__class__.__name__}: {e}")
        finally:
            self._cleanup(final)
        return self._result()

    # --- 1. dial ---------------------------------------------------------------------------
    def _dial_company(self) -> None:
        self.client = self.rt.pick_client()
        self.company_uuid = str(uuidlib.uuid4())
        digits = self.number.lstrip("+")
        self._update(company_uuid=self.company_uuid)  # known before the leg exists: reapable
        self._subscribe(self.company_uuid, "company")
        self.fork_stream = self.rt.fork_server.expect(self.call_id)
        self._start_audio_pump()
        variables = {
            "origination_uuid": self.company_uuid,
            VAR_CALL_ID: self.call_id,
            VAR_ROLE: "company",
            VAR_WORKER: self.rt.worker_id,
            "ignore_early_media": "true",
            "originate_timeout": self.s.ring_timeout_s,
        }
        if self.s.caller_id_number:
            variables["origination_caller_id_number"] = self.s.caller_id_number
        cmd = originate_cmd(f"sofia/gateway/{TRUNK_GATEWAY}/{digits}", variables)
        self.legs_up[self.company_uuid] = True
        job = gevent.spawn(self._bgapi, cmd, self.s.ring_timeout_s + ORIGINATE_SLACK_S, "company")
        self.greenlets.append(job)
        log.info(
            "call %s: dialing %s as %s on %s",
            self.call_id,
            self.number,
            self.company_uuid,
            getattr(self.client, "host", "switch"),
        )
        ringing = False
        while not self.company_answered:
            msg = self._next(timeout=self.s.ring_timeout_s + ORIGINATE_SLACK_S * 2)
            if msg is None:
                raise Ended("no_answer", "originate never completed", "TIMEOUT")
            if msg.kind == "originate" and msg.leg == "company":
                ok, detail = msg.data
                if not ok:
                    self.legs_up[self.company_uuid] = False
                    cause = detail
                    det = self.detector.outcome if self.detector is not None else None
                    status = DETECTOR_FINAL.get(det or "", "") or originate_status(cause)
                    raise Ended(status, f"originate: {cause}" + (f", detector: {det}" if det else ""), cause)
                self._company_answered()  # +OK with ignore_early_media=true means answered
                continue
            if msg.kind == "esl" and msg.leg == "company":
                name = msg.data.name
                if name == "CHANNEL_CREATE":
                    self._schedule_hangup()
                elif name == "CHANNEL_PROGRESS" and not ringing:
                    ringing = True
                    self._update(status="ringing")
                    self._event("call.ringing", {})
                elif name == "CHANNEL_PROGRESS_MEDIA":
                    self._event("call.early_media", {})
                    self._start_fork()
                elif name == "CHANNEL_ANSWER":
                    self._company_answered()
                elif name == "CHANNEL_HANGUP":
                    self._leg_hung_up(msg)
                continue
            if msg.kind == "det" and msg.data.kind in ("sit", "busy"):
                log.info("call %s: detector says %s before answer", self.call_id, msg.data.kind)
                self._kill(self.company_uuid)
                raise Ended(msg.data.kind, f"detector: {msg.data.kind} in early media")
            self._common(msg)

    def _dial_with_retries(self, retries: int, backoff_s: float) -> None:
        """Dial; on busy / no answer dial again up to `retries` times, waiting backoff_s, 2x, 4x ..."""
        for attempt in range(retries + 1):
            if attempt:
                self._update(status="dialing")
                self._event("call.dialing", {"number": self.number, "attempt": attempt + 1})
            try:
                self._dial_company()
                return
            except Ended as e:
                if e.status not in RETRY_STATUSES or attempt >= retries:
                    raise
                delay = backoff_s * (2**attempt)
                log.info("call %s: %s; dialing again in %.1fs", self.call_id, e.status, delay)
                retry = {"attempt": attempt + 2, "after": e.status, "cause": e.cause, "delay_s": delay}
                self._event("call.retry", retry)
                self._reset_for_redial()
                self._pause(delay)

    def _pause(self, seconds: float) -> None:
        """Wait between attempts; a cancel still ends the call at once."""
        deadline = time.monotonic() + seconds
        while True:
            msg = self._next(timeout=max(0.0, deadline - time.monotonic()))
            if msg is None:
                return
            if msg.kind == "ctl":
                self._common(msg)

    def _release_streams(self) -> None:
        """Stop routing this call's ESL events and fork audio to it (best effort)."""
        for uuid in (self.company_uuid, self.desk_uuid):
            if uuid and self.client is not None:
                try:
                    self.client.release(uuid)
                except Exception:  # noqa: BLE001 - best effort
                    log.debug("call %s: release %s failed", self.call_id, uuid)
        try:
            self.rt.fork_server.release(self.call_id)
        except Exception:  # noqa: BLE001 - best effort
            log.debug("call %s: fork release failed", self.call_id)

    def _reset_for_redial(self) -> None:
        """Forget the company leg (and desk leg) of the last attempt; keep control messages."""
        for uuid in (self.company_uuid, self.desk_uuid):
            if uuid:
                self._kill(uuid)
        self._release_streams()
        kept = [m for m in self.pushed if m.kind == "ctl"]
        while not self.inbox.empty():
            msg = self.inbox.get_nowait()
            if msg.kind == "ctl":
                kept.append(msg)
        self.pushed = kept
        self.company_uuid = self.desk_uuid = ""
        self.company_answered = self.fork_started = self.prompt_played = self.navigated = False
        self.company_cause = ""
        self.human_t = 0.0
        self.det_gen += 1
        self.det_offset = self.media_t
        self.last_state = self.nav_state = ""
        self.stt = None

    def _company_answered(self) -> None:
        if self.company_answered:
            return
        self.company_answered = True
        self._start_fork()
        self._update(status="ivr", answered_at=db.utcnow())
        self._event("call.answered", {"uuid": self.company_uuid})
        self._start_recording()

    def _start_recording(self) -> None:
        """uuid_record on the company leg from the answer on (FreeSWITCH mixes both directions; the
        bridge adds the user) to RECORDINGS_DIR/YYYY/MM/DD/<call_id>.wav; options.record=false: none."""
        if self.options.get("record") is False or str(self.options.get("record", "")).lower() == "false":
            return
        path = recording_path(self.s.recordings_dir, self.call_id, db.utcnow())
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)  # same host as the switch in the demo
        except OSError as exc:
            log.info("call %s: recordings directory not created here: %s", self.call_id, exc)
        reply = self._api(f"uuid_record {self.company_uuid} start {path}", quiet=True)
        if not reply.startswith("+OK"):
            log.warning("call %s: recording not started: %s", self.call_id, reply.strip())
            return
        self._update(recording_path=path)
        self._event("call.recording", {"path": path})

    # --- 2. navigate --------------------------------------------------------------------
    def _run_flow(self, steps: list[dict[str, Any]]) -> None:
        """The stored call flow, step by step, through worker.navigator.FlowRunner."""
        from worker.errors import InvalidCallFlow
        from worker.navigator import DONE, FlowRunner

        try:
            runner = FlowRunner(steps, self.options)
        except InvalidCallFlow as exc:
            raise Ended("failed", f"call flow: {exc}") from exc
        self.navigated = True
        if any(a.kind == "listen" for a in runner.actions) and self.rt.transcriber_factory is not None:
            from worker.stt import StreamingTranscriber

            self.stt = StreamingTranscriber(self.rt.transcriber_factory(), self.s.audio_fork_rate)
        held = transferred = False
        previous = ""
        for action in runner:
            log.info("call %s: flow step %s %s", self.call_id, action.step, action.kind)
            after_listen, previous = previous == "listen", action.kind
            if action.kind == "dtmf":
                if not after_listen:  # a LISTEN already heard the prompt out
                    self._wait_prompt_end(PROMPT_MAX_S)
                self._send_dtmf(action.digits)
                self._event("ivr.dtmf", action.to_event())
                self._wait_media(action.wait_after_ms / 1000.0)
            elif action.kind == "listen":
                runner.feed(self._listen(action.timeout_s or PROMPT_MAX_S, action.step))
            elif action.kind == "wait":
                self._wait_media(action.timeout_s)
            elif action.kind == "speak":
                if not after_listen:  # speak once the prompt asked (a LISTEN already heard it out)
                    self._wait_prompt_end(PROMPT_MAX_S)
                self._speak(action.text)
                self._event("ivr.speak", action.to_event())
            elif action.kind == "hold":
                if action.timeout_s:
                    self.max_hold_s = min(self.max_hold_s, int(action.timeout_s))
                self._hold_until_human()
                held = True
                runner.feed("human")
            elif action.kind == "transfer":
                if not held:
                    self._hold_until_human()  # a flow without HOLD: still wait for the person
                    held = True
                if action.to:
                    self.transfer_to = action.to
                self._connect_user()
                transferred = True
            elif action.kind == "end":
                if action.status != DONE:
                    self._event("ivr.ended", action.to_event())
                    raise Ended(
                        "no_human" if action.status == "no_human" else "failed",
                        f"navigation {action.status}: {action.reason}",
                    )
                break
        if not held:
            self._hold_until_human()
        if not transferred:
            self._connect_user()

    def _listen(self, timeout_s: float, step: int) -> str:
        """A LISTEN step: wait for the prompt to end, then its transcript ('' without STT)."""
        if self.stt is not None:
            self.stt.reset()
        self._wait_prompt_end(timeout_s)
        text = ""
        if self.stt is not None:
            try:
                text = " ".join(seg.text for seg in self.stt.end_utterance()).strip()
            except Exception as exc:  # noqa: BLE001 - speech recognition trouble is not a dead call
                log.warning("call %s: transcription failed: %s", self.call_id, exc)
        self._event("ivr.prompt", {"step": step, "transcript": text})
        return text

    def _navigate_menus(self) -> None:
        """Flow-less: transcribe each prompt, let MenuNavigator choose (LLM or embedded keywords), act.

        Returns when the company puts us on hold (a hold message, music, our declined callback offer)
        or the detector hears a person; ends the call on a navigation loop, a dead end or an
        accepted callback offer."""
        from worker.llm import make_chooser
        from worker.navigator import CALLBACK_ACCEPTED, DONE, MenuNavigator

        if self.stt is None:
            return  # no speech recognition in this worker: the detector alone listens for a person
        nav = MenuNavigator(
            self.call.intent or "", self.options, chooser=make_chooser(self.s, self.call_id)
        )
        try:
            while True:
                heard, person = self._hear_prompt(PROMPT_MAX_S)
                if heard != "prompt":
                    log.info("call %s: navigation over: %s", self.call_id, heard)
                    self.navigated = heard == "hold" and self._detector_fooled()
                    return
                heard_text, later = self._transcript_watching()
                if heard_text is None:
                    log.info("call %s: the detector heard a person while we transcribed", self.call_id)
                    return
                text, start, end = heard_text
                person = later or person
                if person is not None and not looks_like_ivr(text):
                    log.info("call %s: a person, not a menu: %r", self.call_id, text[:80])
                    self.pushed.append(person)  # the hold loop confirms it
                    return
                action = nav.on_prompt(text, end)
                self._event("ivr.action", action.to_event())
                if action.kind in ("dtmf", "speak"):
                    self.stt.reset()  # the IVR reacts to us: what it said meanwhile is not the next prompt
                if action.kind == "dtmf":
                    self._send_dtmf(action.digits)
                    self._event("ivr.dtmf", action.to_event())  # the next prompt is awaited below
                elif action.kind == "speak":
                    self._speak(action.text)
                    self._event("ivr.speak", action.to_event())
                if action.status == CALLBACK_ACCEPTED:
                    self._event("ivr.ended", action.to_event())
                    raise Ended("canceled", CALLBACK_ACCEPTED)
                if action.status and action.status != DONE:
                    self._event("ivr.ended", action.to_event())
                    raise Ended("failed", action.status)
                if action.kind == "hold" or action.status == DONE:
                    self.navigated = self._detector_fooled()
                    return
        finally:
            self.stt = None

    def _detector_fooled(self) -> bool:
        """The detector took a menu for a person: it starts afresh on hold (else it keeps its view
        of the whole call, as without navigation)."""
        return self.detector is not None and getattr(self.detector, "outcome", None) == "human"

    def _hear_prompt(self, max_media_s: float) -> tuple[str, Msg | None]:
        """Until a prompt ended ('prompt') or the hold began ('hold'); with the detector's (likely)
        human decision heard meanwhile, if any: the transcript tells a menu from a person."""
        with self._ticks(TICK_S):
            return self._hear_prompt_ticked(max_media_s)

    def _hear_prompt_ticked(self, max_media_s: float) -> tuple[str, Msg | None]:
        # `now`: media time of the messages handled (the pump runs ahead while we transcribe); the
        # company heard our last action at the pump's time, so the wait counts from there.
        start = max(self._live_media_t(), self.seen_t)
        now = began = self.seen_t
        prompt = PromptEnd()
        person: Msg | None = None
        music_since: float | None = now if self.nav_state == "music" else None
        music_s = 0.0  # media seconds of music heard in this wait (hold music mixes in speech-like bits)
        wall_floor = time.monotonic() + FORK_BACKLOG_WALL_S
        while now - start < max_media_s or time.monotonic() < wall_floor:
            msg = self._next(timeout=MEDIA_STALL_S)
            if msg is None:
                break  # no audio flowing: let the hold loop cope
            if msg.kind in ("det", "tick"):
                now = self.seen_t = max(self.seen_t, msg.t_media)
            if msg.kind == "det":
                kind = msg.data.kind
                if kind in ("likely_human", "human"):
                    person = person if person is not None and person.data.kind == "human" else msg
                    prompt.heard_speech = True
                    continue
                if kind in DETECTOR_FINAL:
                    raise Ended(DETECTOR_FINAL[kind], f"detector: {kind}")
                if kind == "state":
                    if music_since is not None:
                        music_s += max(0.0, msg.t_media - music_since)
                    self.nav_state = msg.data.state
                    music_since = msg.t_media if msg.data.state == "music" else None
                    prompt.state(msg.data.state, msg.t_media)
                continue
            if msg.kind != "tick":
                self._common(msg)
            if prompt.ended(now):
                if music_s >= max(1.0, MUSIC_SHARE * (now - began)) and person is None:
                    return "hold", None  # music with pauses (a hold queue), not worth transcribing
                return "prompt", person
            if music_s + (now - music_since if music_since is not None else 0.0) >= HOLD_MUSIC_S:
                return "hold", None
        return ("prompt" if prompt.heard_speech else "hold"), person  # a long quiet: the hold loop copes

    def _transcript_watching(self) -> tuple[tuple[str, float, float] | None, Msg | None]:
        """The buffered prompt as text (stored as an `ivr.prompt` event with its media times).

        Transcribing takes a while and the call goes on: a person the detector hears in new audio
        ends the navigation at once (None; the hold loop gets the decision).  A decision without new
        speech is about the prompt itself (the detector waits for the quiet after it): returned
        with the text, which tells a menu from a person."""
        stt = self.stt
        if stt is None:
            return ("", round(self.media_t, 2), round(self.media_t, 2)), None
        job = gevent.spawn(stt.end_utterance)
        self.greenlets.append(job)
        job.link(lambda _: self.inbox.put(Msg("stt_done")))
        new_speech = False
        person: Msg | None = None
        with self._ticks(TICK_S):  # seen_t follows the media time while we transcribe
            try:
                while not job.ready():
                    msg = self._next(timeout=None)
                    if msg is None or msg.kind == "stt_done":
                        continue
                    if msg.kind in ("det", "tick"):
                        self.seen_t = max(self.seen_t, msg.t_media)
                    if msg.kind == "det":
                        kind = msg.data.kind
                        if kind in ("likely_human", "human"):
                            if new_speech:
                                self.pushed.append(msg)
                                return None, None
                            person = person if person is not None and person.data.kind == "human" else msg
                        if kind in DETECTOR_FINAL:
                            raise Ended(DETECTOR_FINAL[kind], f"detector: {kind}")
                        if kind == "state":
                            self.nav_state = msg.data.state
                            new_speech = new_speech or msg.data.state != "silence"
                        continue
                    if msg.kind != "tick":
                        self._common(msg)
            finally:
                if not job.ready():
                    job.kill(block=False)
        segments: list[Any] = []
        try:
            segments = job.get() or []
        except Exception as exc:  # noqa: BLE001 - speech recognition trouble is not a dead call
            log.warning("call %s: transcription failed: %s", self.call_id, exc)
        text = " ".join(seg.text for seg in segments).strip()
        start = segments[0].start if segments else round(self.media_t, 2)
        end = segments[-1].end if segments else round(self.media_t, 2)
        self._event("ivr.prompt", {"text": text, "start": start, "end": end})
        return (text, start, end), person

    def _speak(self, text: str) -> None:
        """Say `text` to the company (worker.tts: espeak-ng, or TTS_BASE_URL) with uuid_broadcast."""
        from worker import tts

        try:
            path = tts.synthesize(text, rate=8000, settings=self.s)
        except Exception as exc:  # noqa: BLE001 - a missing voice must not end the call
            log.warning("call %s: could not synthesize speech: %s", self.call_id, exc)
            return
        self._broadcast(self.company_uuid, path)

    def _flow_steps(self) -> list[dict[str, Any]]:
        with db.database.connection_context():
            flow = None
            if self.call.call_flow_id:
                flow = db.CallFlow.get_or_none(db.CallFlow.id == self.call.call_flow_id)
            if flow is None:
                flow = db.CallFlow.for_number(self.number)
            return flow.steps_json if flow is not None else []

    # --- 3. hold ---------------------------------------------------------------------------
    def _hold_until_human(self) -> None:
        if self.navigated:
            self._renew_detector()
        elif self.detector is not None and self.detector.outcome == "human":
            return
        now = db.utcnow()
        self._update(status="holding", hold_started_at=now)
        self._event("hold.started", {"media_t": round(self.media_t, 2)})
        with self._ticks(HOLD_TICK_S):
            self._hold_loop()

    def _hold_loop(self) -> None:
        deadline = time.monotonic() + self.max_hold_s
        likely_at: float | None = None  # media time of the last likely_human still being confirmed
        while True:
            msg = self._next(timeout=max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise Ended("no_human", f"no human within {self.max_hold_s}s")
            if msg.kind == "det":
                kind = msg.data.kind
                if kind == "likely_human":
                    self._event("human.likely", {"t": round(msg.t_media, 2)})
                    self._play_connecting()
                    likely_at = msg.t_media
                elif kind == "human":
                    self.human_t = msg.t_media
                    return
                elif kind in DETECTOR_FINAL:
                    raise Ended(DETECTOR_FINAL[kind], f"detector: {kind}")
                elif kind == "state" and likely_at is not None:
                    if msg.data.state in ("music", "ringback"):
                        log.info(
                            "call %s: likely human at %.1fs was a false alarm (%s)",
                            self.call_id,
                            likely_at,
                            msg.data.state,
                        )
                        self._event("human.unconfirmed", {"t": round(likely_at, 2), "then": msg.data.state})
                        likely_at = None
                        self.prompt_played = False
                continue
            if msg.kind == "tick" and time.monotonic() - self.meta_saved_at >= META_EVERY_S:
                self._save_meta()  # the dashboard's hold counter keeps moving
            if msg.kind == "tick" and likely_at is not None:
                # Only the detector confirms a person: silence after our prompt is no proof (a hold
                # track's quiet stretch after an announcement looks the same).  The tick's own media
                # time is in step with the detector events before it; the pump's runs ahead.
                if msg.t_media - likely_at >= CONFIRM_MAX_S:
                    self._event("human.unconfirmed", {"t": round(likely_at, 2), "then": "timeout"})
                    likely_at = None
                continue
            self._common(msg)

    # --- 4. connect the user ----------------------------------------------------------------
    def _connect_user(self) -> None:
        self._update(status="human_detected", human_detected_at=db.utcnow())
        self._event(
            "human.detected",
            {
                "t": round(self.human_t or self.media_t, 2),
                "confidence": getattr(self.detector, "confidence", None),
            },
        )
        self._play_connecting()
        self._update(status="connecting")
        devices = self._devices()
        rounds = 1 + int(self.options.get("desk_retries", DESK_RETRIES))
        last = "user_no_answer"
        for attempt in range(rounds):
            outcomes = []
            for ext in devices:
                outcome = self._ring_desk(ext)
                if outcome == "answered":
                    if self.options.get("screen") and not self._screen():
                        self._kill(self.desk_uuid)
                        outcome = "user_no_answer"
                    else:
                        self._bridge()
                        return
                outcomes.append(outcome)
            unavailable = all(o == "device_unavailable" for o in outcomes)
            last = "device_unavailable" if unavailable else "user_no_answer"
            if unavailable:
                break  # no device is registered: ringing again cannot help
            if attempt + 1 < rounds:
                self._broadcast(self.company_uuid, self.rt.prompts.reassure())
                self._event("agent.prompt", {"prompt": "reassure"})
        reason = (
            "desk phone not registered" if last == "device_unavailable" else "nobody answered the desk phone"
        )
        raise Ended(last, reason)

    def _devices(self) -> list[str]:
        devices = self.options.get("devices")  # "1000,1001": ring these in turn
        if isinstance(devices, str) and devices.strip():
            return [d.strip() for d in devices.split(",") if d.strip()]
        if self.transfer_to:
            return [self.transfer_to]
        with db.database.connection_context():
            dev = db.Device.default()
        if dev is None:
            raise Ended("device_unavailable", "no desk device configured")
        return [dev.extension]

    def _ring_desk(self, ext: str) -> str:
        """Ring one device: 'answered', 'device_unavailable' or 'user_no_answer'."""
        self.desk_uuid = str(uuidlib.uuid4())
        self._update(desk_uuid=self.desk_uuid)
        self._subscribe(self.desk_uuid, "desk")
        digits = self.number.lstrip("+")
        variables = {
            "origination_uuid": self.desk_uuid,
            VAR_CALL_ID: self.call_id,
            VAR_ROLE: "desk",
            VAR_WORKER: self.rt.worker_id,
            "ignore_early_media": "true",
            "originate_timeout": self.s.desk_ring_timeout_s,
            "origination_caller_id_name": safe_var_value(self.company_name),
            "origination_caller_id_number": digits,
        }
        cmd = originate_cmd(f"user/{ext}@{self.s.sip_domain}", variables)
        self.legs_up[self.desk_uuid] = True
        self.greenlets.append(
            gevent.spawn(self._bgapi, cmd, self.s.desk_ring_timeout_s + ORIGINATE_SLACK_S, "desk")
        )
        self._event("device.ringing", {"extension": ext, "uuid": self.desk_uuid})
        log.info("call %s: ringing desk %s as %s", self.call_id, ext, self.desk_uuid)
        while True:
            msg = self._next(timeout=self.s.desk_ring_timeout_s + ORIGINATE_SLACK_S * 2)
            if msg is None:
                self._kill(self.desk_uuid)
                return "user_no_answer"
            if msg.kind == "originate" and msg.leg == "desk":
                ok, detail = msg.data
                if ok:
                    self._event("device.answered", {"extension": ext})
                    return "answered"
                self.legs_up[self.desk_uuid] = False
                log.info("call %s: desk %s: %s", self.call_id, ext, detail)
                self._event("device.failed", {"extension": ext, "cause": detail})
                return "device_unavailable" if detail in DESK_UNAVAILABLE_CAUSES else "user_no_answer"
            if msg.kind == "esl" and msg.leg == "desk":
                if msg.data.name == "CHANNEL_ANSWER":
                    self._event("device.answered", {"extension": ext})
                    return "answered"
                if msg.data.name == "CHANNEL_HANGUP":
                    self.legs_up[self.desk_uuid] = False
                    cause = msg.data.get("Hangup-Cause", "") or ""
                    return "device_unavailable" if cause in DESK_UNAVAILABLE_CAUSES else "user_no_answer"
                continue
            if msg.kind == "det":
                continue  # the agent talking while the phone rings is expected
            self._common(msg)

    def _screen(self) -> bool:
        self._broadcast(self.desk_uuid, self.rt.prompts.whisper(self.company_name))
        deadline = time.monotonic() + float(self.options.get("screen_timeout_s") or SCREEN_TIMEOUT_S)
        while True:
            msg = self._next(timeout=max(0.0, deadline - time.monotonic()))
            if msg is None:
                return False
            if msg.kind == "esl" and msg.leg == "desk":
                if msg.data.name == "DTMF" and msg.data.get("DTMF-Digit") == "1":
                    return True
                if msg.data.name == "CHANNEL_HANGUP":
                    self.legs_up[self.desk_uuid] = False
                    return False
                continue
            if msg.kind == "det":
                continue
            self._common(msg)

    def _bridge(self) -> None:
        self._api(f"uuid_break {self.company_uuid} all", quiet=True)
        reply = self._api(f"uuid_bridge {self.company_uuid} {self.desk_uuid}")
        if not reply.startswith("+OK"):
            raise EslError(f"uuid_bridge failed: {reply.strip()}")
        bridged_at = db.utcnow()
        hold_s = self._hold_seconds(bridged_at)
        # The event first: whoever sees "transferred" in the row finds call.bridged in the history.
        self._event(
            "call.bridged",
            {"company_uuid": self.company_uuid, "desk_uuid": self.desk_uuid, "hold_seconds": hold_s},
        )
        self._update(status="transferred", bridged_at=bridged_at)
        # The two people are talking: no more listening (CPU and bandwidth go to calls still on hold).
        self.detector = None
        self._api(f"uuid_audio_fork {self.company_uuid} stop", quiet=True)
        log.info("call %s: bridged to the desk phone after %.1fs on hold", self.call_id, hold_s or 0.0)

    # --- 5. follow until hangup ---------------------------------------------------------------
    def _follow_bridge(self) -> None:
        while any(self.legs_up.get(u) for u in (self.company_uuid, self.desk_uuid)):
            msg = self._next(timeout=None)
            if msg is None:
                continue
            if msg.kind == "esl" and msg.data.name == "CHANNEL_HANGUP":
                self._leg_hung_up(msg)
                if not self.company_cause:
                    self.company_cause = msg.data.get("Hangup-Cause", "") or ""
                # the other leg follows by itself (bridge); make sure of it
                other = self.desk_uuid if msg.leg == "company" else self.company_uuid
                self._kill(other)
                raise Ended("transferred", "", self.company_cause)
            if msg.kind in ("det", "fork_closed"):
                continue
            self._common(msg, bridged=True)

    # === inbox plumbing ==========================================================================
    def _next(self, timeout: float | None) -> Msg | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pushed:
            back = self.pushed.pop(0)
            if back.kind != "det" or back.gen == self.det_gen:
                return back
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                msg: Msg = self.inbox.get(timeout=left)
            except gevent.queue.Empty:
                return None
            if msg.kind == "det" and msg.gen != self.det_gen:
                continue  # queued before the detector was replaced
            return msg

    def _common(self, msg: Msg, bridged: bool = False) -> None:
        """Handle what can happen at any point: hangups, control messages, fork/ESL trouble."""
        if msg.kind == "ctl":
            action = msg.data
            if action["action"] == "hangup":
                log.info("call %s: canceled by the user", self.call_id)
                self._kill(self.company_uuid)
                self._kill(self.desk_uuid)
                raise Ended(
                    "transferred" if bridged else "canceled", "" if bridged else "canceled by the user"
                )
            if action["action"] == "dtmf":
                self._send_dtmf(action["digits"])
                self._event("ivr.dtmf", {"digits": action["digits"], "source": "user"})
            return
        if msg.kind == "esl":
            ev = msg.data
            if ev.name == "CHANNEL_HANGUP":
                self._leg_hung_up(msg)
                if msg.leg == "company":
                    cause = ev.get("Hangup-Cause", "") or ""
                    if self.status in ("human_detected", "connecting"):
                        self._kill(self.desk_uuid)
                        raise Ended("agent_hung_up", "the agent hung up before the user answered", cause)
                    det = self.detector.outcome if self.detector is not None else None
                    if det in DETECTOR_FINAL:
                        raise Ended(DETECTOR_FINAL[det], f"detector: {det}", cause)
                    raise Ended("no_human", f"the company hung up ({cause})", cause)
            elif ev.name == "DTMF":
                self._event("ivr.dtmf", {"digits": ev.get("DTMF-Digit", ""), "from": msg.leg})
            elif ev.key == "mod_audio_fork::connect_failed":
                log.warning("call %s: audio fork could not connect: %s", self.call_id, ev.body)
            return
        if msg.kind == "esl_down":
            log.warning(
                "call %s: ESL connection dropped (%s leg); waiting for reconnect", self.call_id, msg.leg
            )
            return
        if msg.kind == "esl_up":
            self._after_esl_reconnect(msg.leg)
            return
        if msg.kind == "fork_closed":
            log.info("call %s: audio fork closed", self.call_id)
            return
        if msg.kind == "det":
            return

    def _leg_hung_up(self, msg: Msg) -> None:
        uuid = msg.data.unique_id
        self.legs_up[uuid] = False
        if msg.leg == "company":
            self.company_cause = msg.data.get("Hangup-Cause", "") or self.company_cause
        log.info(
            "call %s: %s leg %s hung up (%s)", self.call_id, msg.leg, uuid, msg.data.get("Hangup-Cause", "")
        )

    def _wait_media(self, seconds: float) -> None:
        """Let `seconds` of far-end audio pass (media time, so it scales with the switch's speed)."""
        target = self._live_media_t() + seconds
        with self._ticks(TICK_S):
            while self.media_t < target:
                msg = self._next(timeout=MEDIA_STALL_S)
                if msg is None:
                    return  # no audio flowing: do not wait forever
                self._navigation_msg(msg)

    def _wait_prompt_end(self, max_media_s: float) -> None:
        """Wait until the far end spoke and then stayed quiet PROMPT_END_SILENCE_S (media time)."""
        with self._ticks(TICK_S):
            self._wait_prompt_end_ticked(max_media_s)

    def _wait_prompt_end_ticked(self, max_media_s: float) -> None:
        start = now = max(self._live_media_t(), self.seen_t)
        prompt = PromptEnd()
        while now - start < max_media_s:
            msg = self._next(timeout=MEDIA_STALL_S)
            if msg is None:
                return  # no audio flowing: do not wait forever
            self._navigation_msg(msg)
            if msg.kind in ("det", "tick"):
                # media time of the messages handled, in step with the detector's states (the pump runs ahead)
                now = self.seen_t = max(self.seen_t, msg.t_media)
            if msg.kind == "det" and msg.data.kind == "state":
                prompt.state(msg.data.state, msg.t_media)
            if prompt.ended(now):
                return

    def _navigation_msg(self, msg: Msg) -> None:
        """While a stored flow drives the IVR, recorded menus are expected: detector decisions are
        ignored here (the detector starts afresh on hold, knowing the menus it heard)."""
        if msg.kind in ("det", "tick"):
            return
        self._common(msg)

    # === helpers: switch ==================================================================
    def _subscribe(self, uuid: str, leg: str) -> None:
        stream = self.client.events_for(uuid)
        self.greenlets.append(gevent.spawn(self._esl_pump, stream, leg))

    def _esl_pump(self, stream: Any, leg: str) -> None:
        while True:
            ev = stream.get(timeout=None)
            if ev is None:
                return  # released
            name = getattr(ev, "name", "")
            if name == "HS_ESL_DISCONNECTED":
                self.inbox.put(Msg("esl_down", leg=leg))
            elif name == "HS_ESL_RECONNECTED":
                self.inbox.put(Msg("esl_up", leg=leg))
            elif not name.startswith("HS_"):
                self.inbox.put(Msg("esl", ev, leg=leg))

    def _bgapi(self, cmd: str, timeout: float, leg: str) -> None:
        try:
            body = self.client.bgapi(cmd, timeout)
            result = bgapi_result(body)
        except EslTimeout:
            result = (False, "ORIGINATE_TIMEOUT")
        except EslDisconnected:
            result = (False, "ESL_DISCONNECTED")
        except EslError as exc:
            result = bgapi_result(getattr(exc, "reply", "") or f"-ERR {getattr(exc, 'cause', 'FAILED')}")
        self.inbox.put(Msg("originate", result, leg=leg))

    def _api(self, cmd: str, quiet: bool = False) -> str:
        try:
            return str(self.client.api(cmd))
        except EslError as exc:
            if not quiet:
                raise
            log.info("call %s: %s failed: %s", self.call_id, cmd.split()[0], exc)
            return f"-ERR {exc}"

    def _schedule_hangup(self) -> None:
        reply = self._api(
            f"sched_hangup +{self.s.max_hold_s} {self.company_uuid} ALLOTTED_TIMEOUT", quiet=True
        )
        log.info("call %s: switch-side cap of %ss: %s", self.call_id, self.s.max_hold_s, reply.strip())

    def _start_fork(self) -> None:
        if self.fork_started:
            return
        self.fork_started = True
        url = self.rt.fork_server.url_for(self.call_id)
        meta = json.dumps({"callId": self.call_id, "leg": self.company_uuid}, separators=(",", ":"))
        rate = "16k" if self.s.audio_fork_rate == 16000 else "8k"
        reply = self._api(f"uuid_audio_fork {self.company_uuid} start {url} mono {rate} {meta}", quiet=True)
        log.info("call %s: audio fork to %s: %s", self.call_id, url, reply.strip())

    def _send_dtmf(self, digits: str) -> None:
        if digits:
            self._api(f"uuid_send_dtmf {self.company_uuid} {digits}", quiet=True)

    def _broadcast(self, uuid: str, path: str) -> None:
        self._api(f"uuid_broadcast {uuid} {path} aleg", quiet=True)

    def _play_connecting(self) -> None:
        if self.prompt_played:
            return
        self.prompt_played = True
        self._broadcast(self.company_uuid, self.rt.prompts.connecting())
        self._event("agent.prompt", {"prompt": "connecting"})

    def _kill(self, uuid: str) -> None:
        if uuid and self.legs_up.get(uuid):
            self._api(f"uuid_kill {uuid}", quiet=True)
            self.legs_up[uuid] = False

    def _after_esl_reconnect(self, leg: str) -> None:
        """ESL came back: end the call accounted if its leg vanished meanwhile."""
        uuid = self.company_uuid if leg == "company" else self.desk_uuid
        if not uuid or not self.legs_up.get(uuid):
            return
        exists = self._api(f"uuid_exists {uuid}", quiet=True).strip()
        log.info("call %s: ESL back; %s leg %s exists: %s", self.call_id, leg, uuid, exists)
        if exists == "true":
            return
        self.legs_up[uuid] = False
        if leg == "company":
            if self.status == "transferred":
                raise Ended("transferred", "", "LOST_WHILE_DISCONNECTED")
            raise Ended("failed", "company leg gone while the switch connection was down", "LOST")

    # === helpers: audio =====================================================================
    def _start_audio_pump(self) -> None:
        if self.rt.detector_factory is not None:
            self.detector = self.rt.detector_factory(self.number, ())
        self.rt.audio_hub.add(self)

    def _renew_detector(self) -> None:
        """A fresh detector for the hold, told about the recordings (menus) heard so far and the
        voices that spoke them."""
        if self.rt.detector_factory is None or self.detector is None:
            return
        old = self.detector
        heard = old.fingerprints() if hasattr(old, "fingerprints") else []
        self.detector = self.rt.detector_factory(self.number, heard)
        if hasattr(self.detector, "inherit"):
            self.detector.inherit(old)  # the menus' voices: a replayed menu is not a direct answer
        self.det_gen += 1
        self.det_offset = self.media_t
        self.last_state = ""

    def on_audio(self, chunk: bytes, arrival: float, detector: Any, events: list, closed: bool) -> None:
        """The audio hub's round for this call (in the hub's greenlet): `chunk` came off the fork
        (arrival: perf_counter of its first frame), `events` are what `detector` decided on it.
        Media time advances by the chunk's byte count; a tick follows every `tick_every` of it."""
        if chunk:
            if self.stt is not None:
                self.stt.feed(chunk[: len(chunk) - len(chunk) % 2])
            if detector is not None and detector is self.detector:  # else replaced meanwhile: stale
                gen, offset = self.det_gen, self.det_offset
                for ev in events:
                    if ev.kind == "state":
                        if ev.state == self.last_state:
                            continue
                        self.last_state = ev.state
                        self._event(
                            "detector.state", {"t": round(offset + ev.t, 2), "state": ev.state}, quiet=True
                        )
                    self.inbox.put(Msg("det", ev, t_arrival=arrival, gen=gen, t_media=offset + ev.t))
            self.media_t += len(chunk) / (2 * self.audio_rate)
            every = self.tick_every
            if every is not None and self.media_t >= self.next_tick:
                self.next_tick = self.media_t + every
                self.inbox.put(Msg("tick", t_media=self.media_t))  # media time passes regardless
        if closed:
            self.inbox.put(Msg("fork_closed"))

    def _live_media_t(self) -> float:
        """Media time including the audio that already reached the worker but that the audio hub has
        not analysed yet.  It all predates what the call does now (a DTMF, a wait): counting it as
        time to come would let a backlog (the hub held up by a transcription, or a busy worker) pass
        for the company's silence after our action."""
        stream = self.fork_stream
        if stream is None:
            return self.media_t
        stream.poll()
        return self.media_t + stream.buffered / (2 * self.audio_rate)

    @contextmanager
    def _ticks(self, every: float) -> Iterator[None]:
        """Ticks every `every` media seconds while inside (a media-time wait needs them; elsewhere
        the call's greenlet is not woken by audio that brings no decision)."""
        before = self.tick_every
        self.tick_every = every
        self.next_tick = self.media_t + every if before is None else min(self.next_tick, self.media_t + every)
        try:
            yield
        finally:
            self.tick_every = before

    # === helpers: state =====================================================================
    def _update(self, **fields: Any) -> None:
        """Write fields to the Call row (never over a final status) and mirror status to job.meta."""
        if "status" in fields:
            self.status = fields["status"]
        fields["updated_at"] = db.utcnow()
        self.row_times.update((k, v) for k, v in fields.items() if k in HOLD_TIMES)
        try:
            with db.database.connection_context():
                q = db.Call.update(**fields).where(db.Call.id == self.call_id)
                if fields.get("status") not in db.FINAL_STATUSES:
                    q = q.where(
                        db.Call.status.not_in(sorted(db.FINAL_STATUSES)) | (db.Call.status == "transferred")
                    )
                q.execute()
        except Exception:
            log.exception("call %s: could not store %s", self.call_id, sorted(fields))
            raise
        if "status" in fields:
            self._save_meta()

    def _save_meta(self) -> None:
        """job.meta for the RQ dashboard: status and seconds on hold so far."""
        if self.job is None:
            return
        self.meta_saved_at = time.monotonic()
        try:
            self.job.meta.update(
                {"call_id": self.call_id, "status": self.status, "hold_seconds": self._hold_seconds()}
            )
            self.job.save_meta()
        except Exception as exc:  # noqa: BLE001 - Redis trouble must not end a call
            log.warning("call %s: job meta not saved: %s", self.call_id, exc)

    def _hold_seconds(self, now: Any = None) -> float | None:
        """As Call.hold_seconds, from the times this session wrote to its row (no database read:
        the dashboard's counter of every holding call is refreshed without one)."""
        return db.hold_span(*(self.row_times.get(k) for k in HOLD_TIMES), now=now)

    def _event(self, type_: str, data: dict[str, Any], quiet: bool = False) -> None:
        from worker import events

        try:
            # batched types are stored later, in batches: no database connection now
            batched = type_ in events.BATCHED_TYPES
            with nullcontext() if batched else db.database.connection_context():
                events.publish(self.rt.redis, self.call_id, type_, data)
        except Exception as exc:  # noqa: BLE001 - Redis down: log and continue, the DB row is the truth
            log.warning("call %s: event %s not published: %s", self.call_id, type_, exc)
        if not quiet:
            log.info("call %s: %s %s", self.call_id, type_, data)

    def _cleanup(self, final: Ended | None) -> None:
        try:
            for uuid, up in list(self.legs_up.items()):
                if up:
                    log.info("call %s: hanging up leg %s on exit", self.call_id, uuid)
                    self._kill(uuid)
        except BaseException:  # noqa: BLE001 - keep cleaning up: a leg must never stay up
            log.exception("call %s: error while hanging up legs", self.call_id)
        self._release_streams()
        self.rt.audio_hub.remove(self)
        gevent.killall(self.greenlets, block=False)
        self.rt.active.pop(self.call_id, None)
        if final is None:
            final = Ended("failed", "ended without a status")
        fields: dict[str, Any] = {"status": final.status, "ended_at": db.utcnow()}
        if final.reason:
            fields["status_reason"] = final.reason
        cause = final.cause or self.company_cause
        if cause:
            fields["hangup_cause"] = cause
        # The event first: whoever sees the final status in the row finds call.ended in the history.
        self._event("call.ended", {"status": final.status, "reason": final.reason, "hangup_cause": cause})
        try:
            self._update(**fields)
        except Exception:  # noqa: BLE001 - logged in _update; the reaper is the backstop
            return

    def _result(self) -> dict[str, Any]:
        with db.database.connection_context():
            call = db.Call.get_by_id(self.call_id)
            return {
                "call_id": call.id,
                "status": call.status,
                "reason": call.status_reason,
                "hold_seconds": call.hold_seconds(),
            }


def active_call_ids(rt: Runtime) -> Iterable[str]:
    return list(rt.active)
