"""GET /healthz: 200 when Redis and the database answer, else 503 naming what is down."""

from __future__ import annotations

import logging
from typing import Any

import peewee as pw
import redis
from flask import Blueprint, jsonify

from web.http import redis_conn, settings
from worker import db

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    checks: dict[str, str] = {}
    try:
        redis_conn().ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        log.warning("healthz: redis down: %s", exc)
        checks["redis"] = f"down: {exc.__class__.__name__}"
    try:
        db.init_db(settings().database_url)
        db.database.execute_sql("SELECT 1").fetchone()
        checks["database"] = "ok"
    except pw.PeeweeException as exc:
        log.warning("healthz: database down: %s", exc)
        checks["database"] = f"down: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    resp = jsonify({"ok": ok, **checks})
    resp.status_code = 200 if ok else 503
    return resp
