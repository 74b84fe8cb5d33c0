"""THE RQ job: `worker.job.hold_slayer(request: dict)` (stable dotted path, JSON serializer).

`request` is either `{"call_id": "<id>"}` for a Call the web app already stored,
or a full request from another app, validated here exactly as the web does:
`{"number", "intent", "call_flow_id"?, "transfer_to"?, "options"?}`.

The job runs inside `python -m worker`, which installs the process `Runtime`
(ESL connections, audio-fork server, prompts, detector factory) with
`install(runtime)`; the call itself is `worker.session.CallSession`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import gevent
import gevent.event
import redis
from rq import get_current_job

from worker import db, events, queueing
from worker.session import CONTROL_PATTERN, CallSession, Msg, Runtime, parse_control

log = logging.getLogger(__name__)

_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Set (or clear) the process runtime the job uses."""
    global _runtime
    _runtime = runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker.job.hold_slayer runs inside `python -m worker` (no runtime installed)")
    return _runtime


def hold_slayer(request: dict[str, Any]) -> dict[str, Any]:
    """Dial, navigate, wait on hold, ring the user's phone, bridge. Returns the final call summary."""
    rt = runtime()
    job = get_current_job()
    job_id = getattr(job, "id", "") or ""
    with db.database.connection_context():
        call, _ = queueing.ensure_call(rt.redis, request, rt.settings, job_id)
    if call.is_final:
        log.info("call %s: already final (%s); nothing to do (job %s)", call.id, call.status, job_id)
        return summary(call)
    if call.status != "queued":
        # Another worker started it (RQ re-delivery). Never dial twice: the reaper settles lost ones.
        log.warning(
            "call %s: already %s on worker %s; not dialing again", call.id, call.status, call.worker_id
        )
        return summary(call)
    if rt.redis is not None and _cancel_requested(rt.redis, call.id):
        log.info("call %s: canceled before dialing", call.id)
        with db.database.connection_context():
            now = db.utcnow()
            db.Call.update(
                status="canceled", status_reason="canceled by the user", ended_at=now, updated_at=now
            ).where(db.Call.id == call.id).execute()
            events.publish(
                rt.redis, call.id, "call.ended", {"status": "canceled", "reason": "canceled by the user"}
            )
            return summary(db.Call.get_by_id(call.id))
    log.info("call %s: job %s starts on worker %s", call.id, job_id or "-", rt.worker_id)
    return CallSession(rt, call, job=job).run()


def summary(call: db.Call) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "status": call.status,
        "reason": call.status_reason,
        "hold_seconds": call.hold_seconds(),
    }


def _cancel_requested(conn: redis.Redis, call_id: str) -> bool:
    try:
        return bool(conn.exists(queueing.cancel_flag_key(call_id)))
    except redis.exceptions.RedisError as exc:
        log.warning("call %s: cancel flag unreadable: %s", call_id, exc)
        return False


class ControlHub:
    """One Redis subscription per worker for `hs:control:*`, routed to the calls it runs."""

    def __init__(self, conn: redis.Redis, rt: Runtime) -> None:
        self.conn = conn
        self.rt = rt
        self._greenlet: gevent.Greenlet | None = None
        self.ready = gevent.event.Event()

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self) -> None:
        backoff = 1.0
        while True:
            pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(CONTROL_PATTERN)
                self.ready.set()
                backoff = 1.0
                for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    self.route(_text(message["channel"]), message["data"])
            except redis.exceptions.RedisError as exc:
                log.warning("control channel lost (%s); resubscribing in %.0fs", exc, backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                try:
                    pubsub.close()
                except redis.exceptions.RedisError:
                    pass

    def route(self, channel: str, data: bytes | str) -> bool:
        call_id = channel.rsplit(":", 1)[-1]
        session = self.rt.active.get(call_id)
        if session is None:
            return False  # another worker runs it
        try:
            msg = parse_control(data)
        except ValueError as exc:
            log.warning("call %s: ignoring control message: %s", call_id, exc)
            return False
        log.info("call %s: control %s", call_id, json.dumps(msg))
        session.inbox.put(Msg("ctl", msg))
        return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
