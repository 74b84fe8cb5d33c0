"""REST: calls.  POST /api/calls/hold-slayer launches one; the rest reads or steers it."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify, request

from web.auth import write_required
from web.http import call_links, json_body, launch_call, redis_conn, settings
from worker import db, events, queueing
from worker.errors import Conflict, NotFound, SchemaViolation, ValidationError

bp = Blueprint("calls", __name__, url_prefix="/api/calls")

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20


def get_call(call_id: str) -> db.Call:
    call = db.Call.get_or_none(db.Call.id == call_id)
    if call is None:
        raise NotFound(f"no call {call_id!r}")
    return call


def call_view(call: db.Call) -> dict[str, Any]:
    history = events.history(redis_conn(), call.id)
    out = call.to_dict()
    out["events"] = {
        "count": len(history),
        "last": history[-1] if history else None,
        "types": [e["type"] for e in history][-50:],
    }
    out["links"] = call_links(call.id)
    return out


@bp.post("/hold-slayer")
@write_required
def create() -> Any:
    call = launch_call(json_body(), source="api")
    resp = jsonify({"call_id": call.id, "status": call.status, "links": call_links(call.id)})
    resp.status_code = 202
    resp.headers["Location"] = call_links(call.id)["self"]
    return resp


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError(f"query parameter {name} must be an integer from {low} to {high}")
    return int(raw)


@bp.get("")
def index() -> Any:
    page = _int_arg("page", 1, 1, 1_000_000)
    per_page = _int_arg("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    query = db.Call.select()
    status = request.args.get("status")
    if status:
        if status not in db.STATUSES:
            raise ValidationError(f"unknown status {status!r}")
        query = query.where(db.Call.status == status)
    total = query.count()
    rows = query.order_by(db.Call.created_at.desc(), db.Call.id).paginate(page, per_page)
    calls = [dict(c.to_dict(), links=call_links(c.id)) for c in rows]
    has_next = page * per_page < total
    return jsonify({
        "calls": calls,
        "page": page,
        "per_page": per_page,
        "total": total,
        "next": f"/api/calls?page={page + 1}&per_page={per_page}" if has_next else None,
    })


@bp.get("/<call_id>")
def show(call_id: str) -> Any:
    return jsonify(call_view(get_call(call_id)))


@bp.get("/<call_id>/events")
def call_events(call_id: str) -> Any:
    call = get_call(call_id)
    return jsonify({"call_id": call.id, "events": events.history(redis_conn(), call.id)})


@bp.post("/<call_id>/hangup")
@write_required
def hangup(call_id: str) -> Any:
    call = get_call(call_id)
    canceled = queueing.cancel_call(redis_conn(), call, settings())
    call = get_call(call_id)
    resp = jsonify({"call_id": call.id, "status": call.status, "canceled_before_dialing": canceled})
    resp.status_code = 202
    return resp


DTMF_RE = re.compile(r"^[0-9*#A-D]{1,32}$")


@bp.post("/<call_id>/dtmf")
@write_required
def dtmf(call_id: str) -> Any:
    body = json_body()
    digits = body.get("digits")
    if not isinstance(digits, str) or not DTMF_RE.match(digits):
        raise SchemaViolation(
            "digits: 1 to 32 of 0-9 * # A-D", details={"field": "digits", "rule": "pattern"}
        )
    extra = sorted(set(body) - {"digits"})
    if extra:
        raise SchemaViolation(f"{extra[0]}: unexpected field", details={"field": extra[0]})
    call = get_call(call_id)
    if call.is_final:
        raise Conflict(f"call {call.id} already ended ({call.status})")
    receivers = queueing.send_control(redis_conn(), call.id, "dtmf", digits=digits)
    resp = jsonify({"call_id": call.id, "digits": digits, "delivered": receivers > 0})
    resp.status_code = 202
    return resp
