"""The one error mapping: every exception becomes {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import peewee as pw
import pytest
import redis
from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound

from web.errors import to_response
from worker import errors


@pytest.fixture
def ctx():
    app = Flask("t")
    with app.app_context():
        yield


def _limited() -> errors.RateLimited:
    exc = errors.RateLimited("slow down")
    exc.retry_after = 17  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidNumber("bad"), 400, "invalid_number"),
        (errors.SchemaViolation("x: bad", {"field": "x"}), 400, "schema_violation"),
        (errors.UnknownCallFlow("no"), 404, "unknown_call_flow"),
        (_limited(), 429, "rate_limited"),
        (pw.IntegrityError("UNIQUE constraint failed: device.extension"), 409, "conflict"),
        (pw.OperationalError("could not connect to server"), 503, "database_unavailable"),
        (redis.ConnectionError("Connection refused"), 503, "redis_unavailable"),
        (NotFound(), 404, "not_found"),
        (MethodNotAllowed(valid_methods=["GET"]), 405, "method_not_allowed"),
        (RuntimeError("secret internals /etc/passwd"), 500, "internal_error"),
    ],
)
def test_mapping(ctx, exc: BaseException, status: int, code: str) -> None:
    resp = to_response(exc)
    assert resp.status_code == status
    body = resp.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "passwd" not in body["error"]["message"]           # internals never leak
    assert "could not connect" not in body["error"]["message"]
    if code == "schema_violation":
        assert body["error"]["details"] == {"field": "x"}
    if code == "rate_limited":
        assert resp.headers["Retry-After"] == "17"
    if code == "method_not_allowed":
        assert resp.headers["Allow"] == "GET"
