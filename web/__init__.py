"""Hold Slayer web front end: launch form, REST API, live events, RQ dashboard.

    app = create_app()                     # Settings.from_env(); FLASK_* env for Flask config
    app = create_app({"SETTINGS": settings, "TESTING": True})

Run it with `python -m web` (gevent WSGI server, for development and the demo)
or in production with gunicorn's gevent worker (WebSockets need it):

    gunicorn -k gevent -w 2 -b 0.0.0.0:8000 'web:create_app()'

Every write needs the API key; reads of /api/* and /ws/events need it too
unless FLASK_PUBLIC_READS=true.  /healthz is always open.

Extensions live on `app.extensions`: "hs.settings" (worker.config.Settings),
"hs.redis" (redis.Redis), "hs.queue" (the rq.Queue, JSON serializer).  The
database is the shared peewee proxy of worker.db, initialised from
Settings.database_url.
"""

from __future__ import annotations

# Nothing heavy is imported at module level: `python -m web` runs this file before
# web/__main__.py, whose first act must be gevent's monkey.patch_all().
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from worker.config import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024           # request bodies larger than this get 413
READ_PROTECTED = ("/api/", "/ws/")    # GETs under these need the key (session or header) by default


def _secret_key(settings: Settings) -> bytes:
    """FLASK_SECRET_KEY when set; else derived from the API key (stable across processes); else random."""
    seed = settings.api_key or settings.service_key
    if seed:
        return hmac.new(seed.encode(), b"hold-slayer session key v1", hashlib.sha256).digest()
    return os.urandom(32)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    import datetime as dt

    import peewee as pw
    import redis
    from flask import Flask, g, request

    from worker import db, queueing
    from worker.config import Settings

    app = Flask(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(days=7),
        JSON_SORT_KEYS=False,
        PUBLIC_READS=False,          # FLASK_PUBLIC_READS=true: GET /api/* and /ws/events without a key
    )
    if test_config is None:
        app.config.from_prefixed_env()          # FLASK_SECRET_KEY, FLASK_SESSION_COOKIE_SECURE, ...
    else:
        app.config.update(test_config)

    settings = app.config.get("SETTINGS") or Settings.from_env()
    app.extensions["hs.settings"] = settings
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(settings)
    if not (settings.api_key or settings.service_key):
        log.warning("no API_KEY configured: every write will be refused with 503 until one is set")

    conn = redis.Redis.from_url(settings.redis_url)
    app.extensions["hs.redis"] = conn
    app.extensions["hs.queue"] = queueing.queue(conn, settings)

    try:
        db.init_db(settings.database_url)
    except pw.OperationalError as exc:      # e.g. PostgreSQL still starting: retried on each request
        log.error("database unavailable at start (%s); retrying on each request", exc.__class__.__name__)

    @app.before_request
    def _connect_db() -> None:
        if request.endpoint == "health.healthz":
            return                              # reports the database state itself
        db.init_db(settings.database_url)      # a no-op once the tables exist
        db.database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close_db(exc: BaseException | None) -> None:
        if not db.database.is_closed():
            db.database.close()

    from web import auth, call_flows, calls, dashboard, devices, errors, health, views, ws

    @app.before_request
    def _reads_need_key() -> None:
        # Calls carry phone numbers, intents and account numbers: reads need the key too, unless opened.
        if request.method in auth.SAFE_METHODS and request.path.startswith(READ_PROTECTED):
            if not app.config.get("PUBLIC_READS"):
                g.key_id = auth.authenticate()

    errors.init_app(app)
    auth.init_app(app)
    for bp in (calls.bp, call_flows.bp, devices.bp, health.bp, views.bp):
        app.register_blueprint(bp)
    ws.init_app(app)
    dashboard.init_app(app, settings.redis_url)
    return app
