"""HTML pages: the launch form with recent calls (/), and one call's live page (/calls/<id>)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, g, redirect, render_template, request, url_for

from web.auth import authenticate, session_key_id
from web.calls import get_call
from web.http import launch_call, redis_conn
from worker import db, events
from worker.errors import HoldSlayerError

bp = Blueprint("views", __name__)
RECENT_CALLS = 20


@bp.app_template_filter("clock")
def clock(ts: float) -> str:
    """Epoch seconds as HH:MM:SS.mmm UTC (the call page's event times; call.js renders the same)."""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def _form_context(**extra: Any) -> dict[str, Any]:
    return {
        "flows": db.CallFlow.current(),
        "devices": list(
            db.Device.select().where(db.Device.enabled == True).order_by(db.Device._meta.primary_key)  # noqa: E712
        ),
        "calls": list(db.Call.select().order_by(db.Call.created_at.desc()).limit(RECENT_CALLS)),
        "form": {},
        "error": None,
        **extra,
    }


def _login_redirect() -> Any:
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")), code=303)


@bp.get("/")
def index() -> Any:
    if session_key_id() is None:
        return _login_redirect()
    return render_template("index.html", **_form_context())


def _body_from_form(form: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"number": form.get("number", ""), "intent": form.get("intent", "")}
    flow = form.get("call_flow_id", "")
    if flow:
        body["call_flow_id"] = int(flow) if flow.isdigit() else flow
    if form.get("transfer_to"):
        body["transfer_to"] = form["transfer_to"]
    if form.get("account_number"):
        body["options"] = {"account_number": form["account_number"].strip()}
    return body


@bp.post("/calls")
def launch() -> Any:
    if session_key_id() is None:
        return _login_redirect()
    g.key_id = authenticate()                   # session + CSRF token
    try:
        call = launch_call(_body_from_form(request.form), source="web")
    except HoldSlayerError as exc:
        ctx = _form_context(error=str(exc), form=request.form)
        return render_template("index.html", **ctx), exc.status
    return redirect(url_for("views.call_page", call_id=call.id), code=303)


@bp.get("/calls/<call_id>")
def call_page(call_id: str) -> Any:
    if session_key_id() is None:
        return _login_redirect()
    call = get_call(call_id)
    return render_template("call.html", call=call, history=events.history(redis_conn(), call.id))

