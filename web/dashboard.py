"""The RQ dashboard (rq-dashboard 0.9 blueprint) at /rq, behind the API key.

Access: HTTP basic auth with the API key as the password (any user name), or a
browser session opened at /login.  Writes (requeue, delete, empty) must come
from our own pages (Origin/Referer check), since browsers resend basic
credentials on their own.  Jobs are read with RQ's JSONSerializer, the one our
queue uses.
"""

from __future__ import annotations

from typing import Any

import rq_dashboard
import rq_dashboard.web
from flask import Flask, request
from rq.serializers import JSONSerializer

from web.auth import SAFE_METHODS, authenticate, same_origin
from web.errors import Forbidden

URL_PREFIX = "/rq"
REALM = "Hold Slayer RQ dashboard"


def _protect() -> Any:
    if request.blueprint == "rq_dashboard":
        authenticate(basic_realm=REALM)
        if request.method not in SAFE_METHODS and not same_origin():
            raise Forbidden("cross-site request refused")                   # browsers resend basic auth
        if request.endpoint == "rq_dashboard.requeue_all" and request.method != "POST":
            raise Forbidden("requeue with POST from the dashboard page")   # a GET must not change state
    return None


def init_app(app: Flask, redis_url: str) -> None:
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", redis_url)
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    rq_dashboard.web.config.serializer = JSONSerializer     # module-wide in rq-dashboard 0.9
    rq_dashboard.web.setup_rq_connection(app)
    app.before_request(_protect)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
