"""REST: call flows (versioned: PUT stores a new version, DELETE hides every version)."""

from __future__ import annotations

from typing import Any

import peewee as pw
from flask import Blueprint, jsonify

from web.auth import write_required
from web.http import json_body, settings
from worker import db, queueing
from worker.errors import Conflict, NotFound
from worker.policy import validate_destination

bp = Blueprint("call_flows", __name__, url_prefix="/api/call-flows")


def _validated(body: dict[str, Any]) -> dict[str, Any]:
    queueing.check_schema("call_flow", body)
    return {
        "name": body["name"].strip(),
        "number": validate_destination(body["number"], settings().allowed_country_codes),
        "description": body.get("description", ""),
        "steps": db.dumps(body["steps"]),
    }


def _get(flow_id: int) -> db.CallFlow:
    flow = db.CallFlow.get_or_none((db.CallFlow.id == flow_id) & (db.CallFlow.deleted == False))  # noqa: E712
    if flow is None:
        raise NotFound(f"no call flow {flow_id}")
    return flow


def _view(flow: db.CallFlow) -> dict[str, Any]:
    out = flow.to_dict()
    versions = (
        db.CallFlow.select(db.CallFlow.id, db.CallFlow.version, db.CallFlow.created_at)
        .where((db.CallFlow.name == flow.name) & (db.CallFlow.deleted == False))  # noqa: E712
        .order_by(db.CallFlow.version)
    )
    out["versions"] = [
        {"id": v.id, "version": v.version, "created_at": db.iso(v.created_at)} for v in versions
    ]
    out["latest_id"] = out["versions"][-1]["id"] if out["versions"] else flow.id
    return out


@bp.get("")
def index() -> Any:
    return jsonify({"call_flows": [f.to_dict() for f in db.CallFlow.current()]})


@bp.post("")
@write_required
def create() -> Any:
    fields = _validated(json_body())
    with db.database.atomic():
        if db.CallFlow.latest(fields["name"]) is not None:
            raise Conflict(
                f"a call flow named {fields['name']!r} exists; PUT /api/call-flows/<id> updates it"
            )
        top = db.CallFlow.select(pw.fn.MAX(db.CallFlow.version)).where(db.CallFlow.name == fields["name"])
        flow = db.CallFlow.create(version=(top.scalar() or 0) + 1, **fields)
    resp = jsonify(_view(flow))
    resp.status_code = 201
    resp.headers["Location"] = f"/api/call-flows/{flow.id}"
    return resp


@bp.get("/<int:flow_id>")
def show(flow_id: int) -> Any:
    return jsonify(_view(_get(flow_id)))


@bp.put("/<int:flow_id>")
@write_required
def update(flow_id: int) -> Any:
    flow = _get(flow_id)
    fields = _validated(json_body())
    if fields["name"] != flow.name:
        raise Conflict(f"a flow keeps its name ({flow.name!r}); POST a new flow to use another")
    new = flow.new_version(number=fields["number"], description=fields["description"], steps=fields["steps"])
    return jsonify(_view(new))


@bp.delete("/<int:flow_id>")
@write_required
def delete(flow_id: int) -> Any:
    flow = _get(flow_id)
    db.CallFlow.update(deleted=True).where(db.CallFlow.name == flow.name).execute()
    return "", 204
