"""REST: devices (the user's registered desk phones)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from web.auth import write_required
from web.http import json_body
from worker import db, queueing
from worker.errors import Conflict, NotFound

bp = Blueprint("devices", __name__, url_prefix="/api/devices")


@bp.get("")
def index() -> Any:
    rows = db.Device.select().order_by(db.Device._meta.primary_key)
    return jsonify({"devices": [d.to_dict() for d in rows]})


@bp.post("")
@write_required
def create() -> Any:
    body = json_body()
    queueing.check_schema("device", body)
    with db.database.atomic():
        if db.Device.get_or_none(db.Device.extension == body["extension"]) is not None:
            raise Conflict(f"device {body['extension']!r} exists")
        device = db.Device.create(
            extension=body["extension"], name=body.get("name", ""), enabled=body.get("enabled", True)
        )
    resp = jsonify(device.to_dict())
    resp.status_code = 201
    resp.headers["Location"] = f"/api/devices/{device.extension}"
    return resp


@bp.delete("/<extension>")
@write_required
def delete(extension: str) -> Any:
    if db.Device.delete().where(db.Device.extension == extension).execute() == 0:
        raise NotFound(f"no device {extension!r}")
    return "", 204
