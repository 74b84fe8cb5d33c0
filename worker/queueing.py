"""Launching calls: request validation, the Call row, the RQ job, and control messages to a running call.

The one way anything enqueues a call is `enqueue_hold_slayer()`; the web goes
through `launch()` (validate, store, event, enqueue, all or nothing).  The job is

    worker.job.hold_slayer(request: dict)      # RQ, JSONSerializer, queue Settings.queue_name

where `request` is the validated body of POST /api/calls/hold-slayer
(schemas/hold_slayer_request.json) plus `call_id` when the web created the row.
Apps that enqueue directly leave `call_id` out; the job then calls
`ensure_call(redis_conn, request, settings, job_id)` which validates exactly as
the web does and creates the row (id = the RQ job id).

Control of a running call: `send_control(redis_conn, call_id, "hangup")` or
`send_control(redis_conn, call_id, "dtmf", digits="123")` PUBLISHes JSON on
`hs:control:<call_id>`; a hangup also sets `hs:cancel:<call_id>` so a job that
subscribes a moment too late still sees it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

import jsonschema
import redis
import rq
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from worker import db, events
from worker.config import Settings
from worker.errors import Conflict, SchemaViolation, UnknownCallFlow, UnknownDevice
from worker.policy import validate_destination

log = logging.getLogger(__name__)

JOB_FUNC = "worker.job.hold_slayer"      # stable dotted path: the RQ job
JOB_TIMEOUT_MARGIN_S = 900               # seconds on top of max_hold_s for dialling, IVR and the transfer
RESULT_TTL_S = 86400                     # keep a finished job's result a day
FAILURE_TTL_S = 7 * 86400                # keep a failed job a week (visible on /rq)
CANCEL_FLAG_TTL_S = 86400                # seconds hs:cancel:<call_id> lives
CONTROL_ACTIONS = ("hangup", "dtmf")
DTMF_RE = re.compile(r"^[0-9*#A-D]{1,32}$")

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


# --- schemas ------------------------------------------------------------------------
@functools.cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """The Draft 2020-12 validator of schemas/<name>.json."""
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def field_path(path: Any) -> str:
    """JSON path of a schema error as 'steps[2].digits' ('' for the document itself)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_schema(name: str, instance: Any) -> None:
    """Raise SchemaViolation naming the failing field when `instance` does not fit schemas/<name>.json."""
    errors = list(validator(name).iter_errors(instance))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors)
    # 'required' and 'additionalProperties' errors sit on the parent: name the missing/extra field.
    path = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [f for f in err.validator_value if f not in err.instance]
        if missing:
            path.append(missing[0])
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            path.append(extra[0])
    where = field_path(path)
    message = f"{where}: {err.message}" if where else err.message
    raise SchemaViolation(
        message,
        details={"field": where, "schema": name, "rule": str(err.validator)},
    )


# --- requests and calls --------------------------------------------------------------
def validate_request(body: Any, settings: Settings) -> dict[str, Any]:
    """The normalised request (E.164 number, resolved flow id, device) or a ValidationError subclass."""
    check_schema("hold_slayer_request", body)
    number = validate_destination(body["number"], settings.allowed_country_codes)

    flow = None
    if body.get("call_flow_id") is not None:
        flow = db.CallFlow.latest(body["call_flow_id"])
        if flow is None:
            raise UnknownCallFlow(f"no call flow {body['call_flow_id']!r}")
    else:
        flow = db.CallFlow.for_number(number)

    if body.get("transfer_to"):
        device = db.Device.get_or_none(db.Device.extension == body["transfer_to"])
        if device is None or not device.enabled:
            state = "is disabled" if device is not None else "does not exist"
            raise UnknownDevice(f"device {body['transfer_to']!r} {state}; see GET /api/devices")
    else:
        device = db.Device.default()
        if device is None:
            raise UnknownDevice("no enabled device to ring; add one with POST /api/devices")

    for ext in str((body.get("options") or {}).get("devices") or "").split(","):
        if ext and db.Device.get_or_none((db.Device.extension == ext) & (db.Device.enabled == True)) is None:  # noqa: E712
            raise UnknownDevice(f"options.devices: device {ext!r} does not exist or is disabled")

    request: dict[str, Any] = {
        "number": number,
        "intent": body["intent"].strip(),
        "call_flow_id": flow.id if flow is not None else None,
        "transfer_to": device.extension,
        "options": dict(body.get("options") or {}),
    }
    if body.get("call_id"):
        request["call_id"] = body["call_id"]
    return request


def create_call(request: dict[str, Any], job_id: str = "") -> db.Call:
    """Insert the queued Call row for a validated request (`call_id` used when present)."""
    return db.Call.create(
        id=request.get("call_id") or db.new_call_id(),
        number=request["number"],
        intent=request["intent"],
        call_flow=request.get("call_flow_id"),
        transfer_to=request["transfer_to"],
        status="queued",
        options=db.dumps(request.get("options") or {}),
        job_id=job_id,
    )


def queued_event_data(call: db.Call, source: str) -> dict[str, Any]:
    return {
        "number": call.number,
        "call_flow_id": call.call_flow_id,
        "transfer_to": call.transfer_to,
        "source": source,
    }


def launch(
    redis_conn: redis.Redis, body: Any, settings: Settings, source: str = "api"
) -> tuple[db.Call, Job]:
    """Validate, store the Call, publish call.queued and enqueue; nothing is left behind on failure."""
    return launch_validated(redis_conn, validate_request(body, settings), settings, source)


def launch_validated(
    redis_conn: redis.Redis, request: dict[str, Any], settings: Settings, source: str = "api"
) -> tuple[db.Call, Job]:
    """`launch()` for a request `validate_request()` already accepted (the web rate-limits in between)."""
    request = dict(request)
    request.pop("call_id", None)                      # the web always mints its own id
    call = create_call(request)
    request["call_id"] = call.id
    try:
        events.publish(redis_conn, call.id, "call.queued", queued_event_data(call, source))
        job = enqueue_hold_slayer(redis_conn, request, settings, source=source)
    except BaseException:
        _forget(redis_conn, call.id)
        raise
    if call.job_id != job.id:
        db.Call.update(job_id=job.id).where(db.Call.id == call.id).execute()
        call.job_id = job.id
    log.info("call %s: queued as job %s (source %s)", call.id, job.id, source)
    return call, job


def _forget(redis_conn: redis.Redis, call_id: str) -> None:
    db.CallEvent.delete().where(db.CallEvent.call == call_id).execute()
    db.Call.delete().where(db.Call.id == call_id).execute()
    try:
        redis_conn.delete(events.history_key(call_id))
    except redis.RedisError:
        log.warning("call %s: could not clear event history", call_id)


def ensure_call(
    redis_conn: redis.Redis | None, request: Any, settings: Settings, job_id: str = ""
) -> tuple[db.Call, dict[str, Any]]:
    """For the job: the Call row for `request` (created, with call.queued, when an app enqueued directly).

    Returns (call, normalised request).  Raises the same ValidationError subclasses as the web.
    """
    if isinstance(request, dict) and request.get("call_id"):
        existing = db.Call.get_or_none(db.Call.id == request["call_id"])
        if existing is not None:
            normalised = dict(request)
            normalised.setdefault("call_flow_id", existing.call_flow_id)
            normalised.setdefault("transfer_to", existing.transfer_to)
            normalised.setdefault("options", existing.options_json)
            return existing, normalised
    normalised = validate_request(request, settings)
    if not normalised.get("call_id") and job_id:
        normalised["call_id"] = job_id.replace("-", "") if _is_uuid(job_id) else db.new_call_id()
    call = create_call(normalised, job_id=job_id)
    normalised["call_id"] = call.id
    events.publish(redis_conn, call.id, "call.queued", queued_event_data(call, "queue"))
    return call, normalised


def _is_uuid(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", text))


# --- the queue --------------------------------------------------------------------------
def queue(redis_conn: redis.Redis, settings: Settings) -> rq.Queue:
    return rq.Queue(settings.queue_name, connection=redis_conn, serializer=JSONSerializer)


def enqueue_hold_slayer(
    redis_conn: redis.Redis, request: dict[str, Any], settings: Settings, source: str = "api"
) -> Job:
    """THE way to enqueue a call: job `worker.job.hold_slayer(request)`, job id = request['call_id']."""
    json.dumps(request)                          # the JSON serializer would fail later, inside RQ
    call_id = request.get("call_id")
    return queue(redis_conn, settings).enqueue(
        JOB_FUNC,
        request,
        job_id=call_id,
        job_timeout=settings.max_hold_s + JOB_TIMEOUT_MARGIN_S,
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
        # The default description is the call string with every argument: keep intent/options off /rq.
        description=f"hold_slayer {request.get('number', '?')} call {call_id or '(new)'}",
        meta={"call_id": call_id, "number": request.get("number"), "source": source},
    )


# --- control of a running call -------------------------------------------------------------
def control_channel(call_id: str) -> str:
    return f"hs:control:{call_id}"


def cancel_flag_key(call_id: str) -> str:
    return f"hs:cancel:{call_id}"


def control_message(action: str, **data: Any) -> dict[str, Any]:
    """The JSON control message (pure); ValueError when it is malformed."""
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"unknown control action {action!r}; expected one of {', '.join(CONTROL_ACTIONS)}")
    if action == "dtmf":
        digits = data.get("digits")
        if not isinstance(digits, str) or not DTMF_RE.match(digits):
            raise ValueError("dtmf needs digits: 1 to 32 of 0-9 * # A-D")
        return {"action": "dtmf", "digits": digits}
    return {"action": "hangup", **({"reason": str(data["reason"])} if data.get("reason") else {})}


def send_control(redis_conn: redis.Redis, call_id: str, action: str, **data: Any) -> int:
    """PUBLISH a control message to the call's job; returns how many subscribers received it."""
    message = control_message(action, **data)
    if action == "hangup":
        redis_conn.set(cancel_flag_key(call_id), "1", ex=CANCEL_FLAG_TTL_S)
    receivers = int(redis_conn.publish(control_channel(call_id), json.dumps(message, separators=(",", ":"))))
    log.info("call %s: control %s sent to %d subscriber(s)", call_id, action, receivers)
    return receivers


def cancel_call(
    redis_conn: redis.Redis, call: db.Call, settings: Settings, reason: str = "canceled by user"
) -> bool:
    """Hang up / cancel a call.  True when it was still queued and is now canceled for good."""
    if call.is_final:
        raise Conflict(f"call {call.id} already ended ({call.status})")
    send_control(redis_conn, call.id, "hangup", reason=reason)
    if call.status != "queued":
        return False
    try:
        job = Job.fetch(call.job_id or call.id, connection=redis_conn, serializer=JSONSerializer)
    except NoSuchJobError:
        job = None
    waiting = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
    if job is not None and job.get_status() not in waiting:
        return False                                   # a worker has it: the control message ends it
    if job is not None:
        job.cancel()
    now = db.utcnow()
    updated = (
        db.Call.update(status="canceled", status_reason=reason, ended_at=now, updated_at=now)
        .where((db.Call.id == call.id) & (db.Call.status == "queued"))
        .execute()
    )
    if updated:
        events.publish(redis_conn, call.id, "call.ended", {"status": "canceled", "reason": reason})
        log.info("call %s: canceled before dialing", call.id)
    return bool(updated)
