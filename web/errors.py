"""Errors of the web package and THE error handler: every failure becomes JSON.

    {"error": {"code": "invalid_number", "message": "...", "details": {...}}}

with the exception's HTTP status.  worker.errors.* carry `code` and `status`;
werkzeug's HTTP errors (404, 405, 413, ...) are mapped by name; anything else is
a 500 `internal_error` whose message reveals nothing (the traceback is logged).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import peewee as pw
import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from worker.errors import Conflict, HoldSlayerError, ValidationError

log = logging.getLogger(__name__)


class InvalidJson(ValidationError):
    code = "invalid_json"


class ApiKeyNotConfigured(HoldSlayerError):
    code = "api_key_not_configured"
    status = 503


class CsrfFailed(HoldSlayerError):
    code = "csrf_failed"
    status = 403


class Forbidden(HoldSlayerError):
    code = "forbidden"
    status = 403


class DatabaseUnavailable(HoldSlayerError):
    code = "database_unavailable"
    status = 503


class RedisUnavailable(HoldSlayerError):
    code = "redis_unavailable"
    status = 503


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "error"


def to_response(exc: BaseException) -> Response:
    """The JSON response for any exception (the one mapping the whole app uses)."""
    if isinstance(exc, HoldSlayerError):
        details = dict(getattr(exc, "details", None) or {})
        resp = jsonify(error_body(exc.code, str(exc) or exc.code, details))
        resp.status_code = exc.status
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            resp.headers["Retry-After"] = str(int(retry_after))
        challenge = getattr(exc, "challenge", None)
        if challenge:
            resp.headers["WWW-Authenticate"] = challenge
        return resp
    if isinstance(exc, pw.IntegrityError):          # a concurrent create won the race for a unique key
        return to_response(Conflict("that record already exists (created concurrently)"))
    if isinstance(exc, (pw.OperationalError, pw.InterfaceError)):
        log.error("database unavailable: %s", exc.__class__.__name__)
        return to_response(DatabaseUnavailable("the database is unavailable; retry shortly"))
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        log.error("redis unavailable: %s", exc.__class__.__name__)
        return to_response(RedisUnavailable("Redis is unavailable; retry shortly"))
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        resp = jsonify(error_body(_snake(exc.name), exc.description or exc.name))
        resp.status_code = status
        for key, value in exc.get_headers():
            if key.lower() not in ("content-type", "content-length"):
                resp.headers[key] = value
        return resp
    log.error("unhandled error: %s", exc.__class__.__name__, exc_info=exc)
    resp = jsonify(error_body("internal_error", "internal error; see the server log"))
    resp.status_code = 500
    return resp


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, to_response)
