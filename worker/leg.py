"""Leg: one FreeSWITCH channel we originated (or re-attached to), driven over ESL.

    leg = Leg.originate(client, "sofia/gateway/trunk/18005551234", {...}, timeout=60)   # blocks on bgapi
    leg = Leg.begin(client, dial, {...})          # returns at once; watch the leg while it rings
    leg.wait_for({"CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER"}, timeout=70)

Every Leg owns a pump greenlet (in the client's group) that reads the channel's
event stream in order, keeps the state (`answered`, `early_media`,
`hangup_cause`, `bridged_to`, `fork_connected`), feeds `events` (every event;
None once the leg is over) and `dtmf_events`, and wakes the waiters.

`wait_for(names)` returns the first matching event that arrives after the call;
state events (PROGRESS, PROGRESS_MEDIA, ANSWER, BRIDGE, HANGUP, HANGUP_COMPLETE)
also match when they already happened, so "wait until answered" never misses
an answer that came first.  It raises LegGone(cause) when the channel hangs up
(or the originate failed) first, EslDisconnected when the ESL link drops
(re-check with `exists()` after the client reconnects), EslTimeout on timeout.
CUSTOM events match by subclass (`mod_audio_fork::connect`).
"""

from __future__ import annotations

import json
import logging
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from typing import Any

import gevent
import gevent.event
import gevent.queue

from worker.config import VAR_CALL_ID, VAR_ROLE, VAR_WORKER
from worker.errors import (
    CommandFailed,
    EslDisconnected,
    EslError,
    EslTimeout,
    ForkFailed,
    LegGone,
    OriginateFailed,
)
from worker.esl import DISCONNECTED, RECONNECTED, EslClient, EventStream
from worker.esl_protocol import (
    EslEvent,
    Reply,
    audio_fork_send_text_cmd,
    audio_fork_start_cmd,
    audio_fork_stop_cmd,
    classify_reply,
    is_no_such_channel,
    originate_cmd,
    parse_originate_result,
    sched_hangup_cmd,
    uuid_bridge_cmd,
    uuid_broadcast_cmd,
    uuid_exists_cmd,
    uuid_getvar_cmd,
    uuid_kill_cmd,
    uuid_record_cmd,
    uuid_send_dtmf_cmd,
)

log = logging.getLogger(__name__)

FORK_CONNECT = "mod_audio_fork::connect"
FORK_CONNECT_FAILED = "mod_audio_fork::connect_failed"
FORK_DISCONNECT = "mod_audio_fork::disconnect"

FORK_CONNECT_TIMEOUT_S = 5.0  # uuid_audio_fork start said +OK; connect/connect_failed must follow by then
ORIGINATE_MARGIN_S = 10.0  # bgapi wait = ring timeout + this (FS answers NO_ANSWER at the timeout)
EVENTS_MAX = 1000  # leg.events bound; the oldest are dropped when nobody reads them

STICKY = frozenset(
    {
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_ANSWER",
        "CHANNEL_BRIDGE",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
    }
)
GONE = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})
FINAL = frozenset({"CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})


class _Waiter:
    __slots__ = ("names", "result")

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.result: gevent.event.AsyncResult = gevent.event.AsyncResult()


class Leg:
    """One channel.  Create with `originate`, `begin` or `attach`; one Leg per uuid."""

    def __init__(self, client: EslClient, uuid: str, *, call_id: str = "", role: str = "") -> None:
        self.client = client
        self.uuid = uuid
        self.call_id = call_id
        self.role = role
        self.answered = False
        self.early_media = False
        self.ringing = False
        self.gone = False
        self.hangup_cause = ""
        self.bridged_to: str | None = None
        self.fork_connected = False
        self._seen_channel = False
        self.events: gevent.queue.Queue[EslEvent | None] = gevent.queue.Queue()
        self.dtmf_events: gevent.queue.Queue[EslEvent] = gevent.queue.Queue()
        self._seen: dict[str, EslEvent] = {}
        self._waiters: list[_Waiter] = []
        self._originated: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._stream: EventStream = client.events_for(uuid)
        self._pump = client.spawn(self._run)

    def __repr__(self) -> str:
        return f"Leg({self.uuid}, call={self.call_id}, role={self.role})"

    # -- creation -------------------------------------------------------------
    @classmethod
    def begin(
        cls,
        client: EslClient,
        dial_string: str,
        variables: Mapping[str, object] | None = None,
        app: str = "park()",
        timeout: float = 60.0,
        *,
        uuid: str | None = None,
        call_id: str = "",
        role: str = "",
        worker_id: str = "",
    ) -> Leg:
        """Start `bgapi originate` and return at once; `wait_originated()` gives its result.

        `timeout` bounds our wait for the BACKGROUND_JOB (plus ORIGINATE_MARGIN_S); the switch's
        own ring limit is the `originate_timeout` variable (FS default 60 s), set it in `variables`.

        The leg carries origination_uuid first, then hs_call_id / hs_role / hs_worker (from the
        keyword arguments unless already in `variables`), so the reaper can tell whose it is.
        """
        given = dict(variables or {})
        leg_uuid = uuid or str(given.pop("origination_uuid", None) or uuidlib.uuid4())
        given.pop("origination_uuid", None)
        variables = {"origination_uuid": leg_uuid, **given}  # first, as in the captures
        if call_id:
            variables.setdefault(VAR_CALL_ID, call_id)
        if role:
            variables.setdefault(VAR_ROLE, role)
        if worker_id:
            variables.setdefault(VAR_WORKER, worker_id)
        cmd = originate_cmd(dial_string, variables, app)  # bad input raises here, before any I/O
        leg = cls(client, leg_uuid, call_id=call_id or str(variables.get(VAR_CALL_ID, "")), role=role)
        log.info("call %s: originating %s leg %s to %s", leg.call_id, role or "a", leg_uuid, dial_string)
        client.spawn(leg._originate, cmd, timeout + ORIGINATE_MARGIN_S)
        return leg

    @classmethod
    def originate(
        cls,
        client: EslClient,
        dial_string: str,
        variables: Mapping[str, object] | None = None,
        app: str = "park()",
        timeout: float = 60.0,
        *,
        uuid: str | None = None,
        call_id: str = "",
        role: str = "",
        worker_id: str = "",
    ) -> Leg:
        """bgapi originate and wait for its result: +OK -> the Leg; -ERR CAUSE -> OriginateFailed(cause)."""
        leg = cls.begin(
            client,
            dial_string,
            variables,
            app,
            timeout,
            uuid=uuid,
            call_id=call_id,
            role=role,
            worker_id=worker_id,
        )
        try:
            leg.wait_originated()
        except OriginateFailed:
            leg.release()  # the caller never sees this Leg; its pump ends after the queued events
            raise
        except EslError:
            # The channel may exist although we lost its result: never leave it billing unowned.
            try:
                leg.hangup("NORMAL_CLEARING")
            except EslError as exc:
                log.warning(
                    "call %s: could not hang up leg %s after a failed originate: %s",
                    leg.call_id,
                    leg.uuid,
                    exc,
                )
            leg.release()
            raise
        return leg

    @classmethod
    def attach(cls, client: EslClient, uuid: str, *, call_id: str = "", role: str = "") -> Leg:
        """Follow an existing channel (after a reconnect or a worker restart)."""
        leg = cls(client, uuid, call_id=call_id, role=role)
        leg._originated.set(uuid)
        return leg

    def _originate(self, cmd: str, timeout: float) -> None:
        # The BACKGROUND_JOB also reaches the pump, in wire order (see _on_job).
        try:
            body = self.client.bgapi(cmd, timeout=timeout, uuid=self.uuid)
            got = parse_originate_result(body)
        except OriginateFailed as exc:
            log.info("call %s: leg %s originate failed: %s", self.call_id, self.uuid, exc.cause)
            self._originated.set_exception(exc)
            return
        except EslError as exc:
            log.warning("call %s: leg %s originate: %s", self.call_id, self.uuid, exc)
            self._originated.set_exception(exc)
            return
        if got != self.uuid:
            log.warning("call %s: originate returned uuid %s, expected %s", self.call_id, got, self.uuid)
        self._originated.set(got)

    def wait_originated(self, timeout: float | None = None) -> str:
        """The originate's `+OK <uuid>`; raises OriginateFailed(cause), EslTimeout or EslDisconnected."""
        try:
            value: str = self._originated.get(timeout=timeout)
        except gevent.Timeout:
            raise EslTimeout(f"leg {self.uuid}: originate result not in within {timeout}s") from None
        return value

    # -- the pump -------------------------------------------------------------
    def _run(self) -> None:
        try:
            for event in self._stream:
                name = event.name
                if name == DISCONNECTED:
                    self._fail_waiters(
                        EslDisconnected(f"leg {self.uuid}: ESL link lost: {event.headers.get('Reason', '')}")
                    )
                    self.events.put(event)
                    continue
                if name == RECONNECTED:
                    self.events.put(event)
                    continue
                if name == "BACKGROUND_JOB":
                    if self._on_job(event):
                        break
                    continue
                self._observe(event)
                self._seen_channel = True
                if self.events.qsize() >= EVENTS_MAX:
                    self.events.get_nowait()
                self.events.put(event)
                if name == "DTMF":
                    self.dtmf_events.put(event)
                key = event.key
                for waiter in list(self._waiters):
                    if key in waiter.names or name in waiter.names:
                        waiter.result.set(event)
                        self._waiters.remove(waiter)
                if name in GONE:
                    # Waiters for a later hangup event (HANGUP_COMPLETE) keep waiting until the end.
                    self._fail_waiters(
                        LegGone(f"leg {self.uuid} hung up ({self.hangup_cause})", self.hangup_cause),
                        keep=None if name in FINAL else GONE,
                    )
                if name in FINAL:
                    break
        finally:
            self._fail_waiters(LegGone(f"leg {self.uuid} is no longer followed", self.hangup_cause))
            self.client.release(self.uuid)
            self.events.put(None)

    def _on_job(self, event: EslEvent) -> bool:
        """Our originate's BACKGROUND_JOB; True when the leg is over (failed before any channel event)."""
        try:
            parse_originate_result(event.body)
        except (OriginateFailed, CommandFailed) as exc:
            cause = exc.cause if isinstance(exc, OriginateFailed) else "ORIGINATE_FAILED"
            self.gone = True
            self.hangup_cause = self.hangup_cause or cause
            err = LegGone(f"leg {self.uuid}: originate failed: {cause}", cause)
            # With a channel, its HANGUP_COMPLETE still ends the leg; without one, nothing else will come.
            self._fail_waiters(err, keep=GONE if self._seen_channel else None)
            return not self._seen_channel
        return False

    def _observe(self, event: EslEvent) -> None:
        name = event.name
        if name in STICKY:
            self._seen[name] = event
        if name == "CHANNEL_UUID" and event.unique_id:
            self.uuid = event.unique_id
        elif name == "CHANNEL_PROGRESS":
            self.ringing = True
        elif name == "CHANNEL_PROGRESS_MEDIA":
            self.early_media = True
        elif name == "CHANNEL_ANSWER":
            self.answered = True
        elif name == "CHANNEL_BRIDGE":
            other = event.headers.get("Other-Leg-Unique-ID") or event.headers.get("Bridge-B-Unique-ID")
            if other == self.uuid:
                other = event.headers.get("Bridge-A-Unique-ID") or event.unique_id
            self.bridged_to = other
        elif name == "CHANNEL_UNBRIDGE":
            self.bridged_to = None
            self._seen.pop("CHANNEL_BRIDGE", None)
        elif event.key == FORK_CONNECT:
            self.fork_connected = True
        elif event.key in (FORK_DISCONNECT, FORK_CONNECT_FAILED):
            self.fork_connected = False
        elif name == "MEDIA_BUG_STOP" and event.headers.get("Media-Bug-Function") == "audio_fork":
            self.fork_connected = False
        if name in GONE:
            self.gone = True
            self.fork_connected = False
            self.hangup_cause = event.headers.get("Hangup-Cause") or self.hangup_cause

    def _fail_waiters(self, exc: Exception, keep: frozenset[str] | None = None) -> None:
        """Fail every waiter, except those waiting for one of `keep`."""
        waiters = self._waiters
        self._waiters = [w for w in waiters if keep is not None and w.names & keep]
        for waiter in waiters:
            if waiter not in self._waiters:
                waiter.result.set_exception(exc)

    # -- waiting --------------------------------------------------------------
    @property
    def media_ready(self) -> bool:
        """Audio flows from the far end (early media or answered)."""
        return self.early_media or self.answered

    def _add_waiter(self, names: Iterable[str]) -> _Waiter:
        waiter = _Waiter(frozenset(names))
        self._waiters.append(waiter)
        return waiter

    def _await(self, waiter: _Waiter, timeout: float | None) -> EslEvent:
        try:
            event: EslEvent = waiter.result.get(timeout=timeout)
        except gevent.Timeout:
            names = ", ".join(sorted(waiter.names))
            raise EslTimeout(f"leg {self.uuid}: none of {names} within {timeout}s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return event

    def wait_for(self, names: Iterable[str], timeout: float | None = None) -> EslEvent:
        """The first of `names` (see the module docstring for what counts and what raises)."""
        wanted = frozenset(names)
        for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            if name in wanted and name in self._seen:
                return self._seen[name]
        if self.gone and (self._pump.dead or not wanted & GONE):
            # An answer that came before the hangup does not count any more; a later hangup
            # event (HANGUP_COMPLETE after HANGUP) is still worth waiting for while the pump runs.
            raise LegGone(f"leg {self.uuid} already hung up ({self.hangup_cause})", self.hangup_cause)
        for name in sorted(wanted & STICKY):
            if name in self._seen:
                return self._seen[name]
        return self._await(self._add_waiter(wanted), timeout)

    def wait_media(self, timeout: float | None = None) -> EslEvent:
        """Early media or answer, whichever comes first."""
        return self.wait_for({"CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER"}, timeout)

    # -- commands -------------------------------------------------------------
    def _api(self, cmd: str, what: str) -> Reply:
        reply = classify_reply(self.client.api(cmd))
        if reply.ok:
            return reply
        if is_no_such_channel(reply.text):
            raise LegGone(f"{what}: leg {self.uuid} is gone ({reply.text})", self.hangup_cause)
        raise CommandFailed(f"{what} on leg {self.uuid} failed: {reply.text}", reply.text)

    def send_dtmf(self, digits: str, duration_ms: int | None = None) -> None:
        self._api(uuid_send_dtmf_cmd(self.uuid, digits, duration_ms), "send_dtmf")
        log.info("call %s: leg %s sent DTMF %s", self.call_id, self.uuid, digits)

    def broadcast(self, path: str, leg: str = "aleg") -> None:
        """Play `path` (file, tone_stream://..., app::args) to this channel (`uuid_broadcast`)."""
        self._api(uuid_broadcast_cmd(self.uuid, path, leg), "broadcast")

    def bridge(self, other: Leg | str) -> None:
        other_uuid = other.uuid if isinstance(other, Leg) else other
        self._api(uuid_bridge_cmd(self.uuid, other_uuid), "bridge")
        log.info("call %s: bridged %s with %s", self.call_id, self.uuid, other_uuid)

    def hangup(self, cause: str | None = "NORMAL_CLEARING") -> bool:
        """uuid_kill [cause]; False (not an error) when the channel was already gone."""
        reply = classify_reply(self.client.api(uuid_kill_cmd(self.uuid, cause)))
        if reply.ok:
            log.info("call %s: hung up leg %s (%s)", self.call_id, self.uuid, cause)
            return True
        if is_no_such_channel(reply.text):
            return False
        raise CommandFailed(f"hangup of leg {self.uuid} failed: {reply.text}", reply.text)

    def start_fork(
        self,
        url: str,
        rate: int = 8000,
        metadata: Mapping[str, Any] | None = None,
        mix: str = "mono",
        timeout: float = FORK_CONNECT_TIMEOUT_S,
    ) -> None:
        """uuid_audio_fork start, then wait for mod_audio_fork::connect; ForkFailed otherwise."""
        cmd = audio_fork_start_cmd(self.uuid, url, mix, rate, metadata)
        waiter = self._add_waiter({FORK_CONNECT, FORK_CONNECT_FAILED})
        try:
            reply = classify_reply(self.client.api(cmd))
            if not reply.ok:
                if self.gone:
                    raise LegGone(f"start_fork: leg {self.uuid} is gone", self.hangup_cause)
                raise ForkFailed(f"leg {self.uuid}: uuid_audio_fork start refused: {reply.text}", reply.text)
            try:
                event = self._await(waiter, timeout)
            except EslTimeout:
                self._stop_fork_quietly()
                raise ForkFailed(
                    f"leg {self.uuid}: audio fork did not connect within {timeout}s", "timeout"
                ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if event.key == FORK_CONNECT_FAILED:
            reason = _json_field(event.body, "reason") or event.body or "connect_failed"
            self._stop_fork_quietly()  # the bug stays attached after connect_failed (§4.2)
            raise ForkFailed(f"leg {self.uuid}: audio fork to {url} failed: {reason}", reason)
        self.fork_connected = True
        log.info("call %s: leg %s audio fork connected to %s", self.call_id, self.uuid, url)

    def stop_fork(self, final_text: Mapping[str, Any] | None = None) -> bool:
        """uuid_audio_fork stop; False when there was no fork (or no channel) any more."""
        reply = classify_reply(self.client.api(audio_fork_stop_cmd(self.uuid, final_text)))
        self.fork_connected = False
        return reply.ok

    def fork_send_text(self, message: Mapping[str, Any]) -> None:
        self._api(audio_fork_send_text_cmd(self.uuid, message), "fork send_text")

    def _stop_fork_quietly(self) -> None:
        try:
            self.stop_fork()
        except EslError as exc:
            log.warning("call %s: leg %s stop_fork after failure: %s", self.call_id, self.uuid, exc)

    def record_start(self, path: str, limit_s: int | None = None) -> None:
        self._api(uuid_record_cmd(self.uuid, "start", path, limit_s), "record start")

    def record_stop(self, path: str) -> None:
        self._api(uuid_record_cmd(self.uuid, "stop", path), "record stop")

    def set_max_duration(self, seconds: int) -> None:
        """The switch itself hangs up after `seconds` (ALLOTTED_TIMEOUT), even if we die."""
        self._api(sched_hangup_cmd(self.uuid, seconds), "sched_hangup")

    def exists(self) -> bool:
        return self.client.api(uuid_exists_cmd(self.uuid)).strip() == "true"

    def getvar(self, name: str) -> str | None:
        """A channel variable; None when unset (`_undef_`)."""
        value = self.client.api(uuid_getvar_cmd(self.uuid, name))
        if is_no_such_channel(value):
            raise LegGone(f"getvar: leg {self.uuid} is gone", self.hangup_cause)
        return None if value in ("_undef_", "") else value

    def release(self) -> None:
        """Stop following the channel (it is not hung up): ends the pump and frees the stream."""
        self.client.release(self.uuid)


def _json_field(text: str, name: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return ""
    return str(value.get(name, "")) if isinstance(value, dict) else ""
