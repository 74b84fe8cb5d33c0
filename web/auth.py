"""Who may write: the API key (header or HTTP basic), or a browser session opened with it.

- API clients send `Authorization: Bearer <key>` or `X-API-Key: <key>`; the
  desk-phone star code (lua/) sends Settings.service_key the same way.
- Browsers log in once at /login (the key is checked, never stored: the signed
  session keeps only an HMAC of it) and send the session's CSRF token with every
  write (form field `csrf_token` or header `X-CSRF-Token`).
- With no key configured every write is refused (503 api_key_not_configured):
  Hold Slayer places real phone calls and is never open by default.

Keys are compared with hmac.compare_digest and never logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from web.errors import ApiKeyNotConfigured, CsrfFailed, Forbidden
from worker.config import Settings
from worker.errors import Unauthorized

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def settings() -> Settings:
    return current_app.extensions["hs.settings"]


def configured_keys() -> dict[str, str]:
    s = settings()
    return {name: key for name, key in (("api", s.api_key), ("service", s.service_key)) if key}


def key_id(key: str) -> str:
    """A stable, non-reversible id of a key (session marker, rate-limit bucket)."""
    secret = current_app.secret_key
    salt = secret if isinstance(secret, bytes) else str(secret).encode()
    return hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()[:24]


def match_key(presented: str) -> str | None:
    """'api' or 'service' when `presented` is a configured key, else None (constant time per key)."""
    found = None
    for name, key in configured_keys().items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = name
    return found


def presented_key() -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return password
    header = request.headers.get("X-API-Key")
    if header is not None:
        return header.strip()
    return None


def session_key_id() -> str | None:
    """The session's key id when it still matches a configured key (a rotated key logs everyone out)."""
    marker = session.get("key_id")
    if not marker:
        return None
    for key in configured_keys().values():
        if hmac.compare_digest(str(marker), key_id(key)):
            return str(marker)
    return None


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def check_csrf() -> None:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    token = session.get("csrf") or ""
    if not token or not hmac.compare_digest(str(sent), str(token)):
        raise CsrfFailed("missing or wrong CSRF token; reload the page")


def same_origin() -> bool:
    """True when the browser says the request comes from our own pages (or says nothing)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True
    return urlsplit(source).netloc == request.host


def authenticate(basic_realm: str | None = None) -> str:
    """The caller's key id, or Unauthorized / ApiKeyNotConfigured / CsrfFailed."""
    if not configured_keys():
        raise ApiKeyNotConfigured("no API_KEY is configured: writes are refused until one is set")
    key = presented_key()
    if key is not None:
        if key and match_key(key):
            return key_id(key)
        log.warning("refused a request with a wrong API key from %s", request.remote_addr)
        exc = Unauthorized("wrong API key")
        exc.challenge = f'Basic realm="{basic_realm}"' if basic_realm else "Bearer"  # type: ignore[attr-defined]
        raise exc
    marker = session_key_id()
    if marker is not None:
        if request.method not in SAFE_METHODS:
            if basic_realm is None:
                check_csrf()
            elif not same_origin():
                raise Forbidden("cross-site request refused")
        return marker
    exc = Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    exc.challenge = f'Basic realm="{basic_realm}"' if basic_realm else "Bearer"  # type: ignore[attr-defined]
    raise exc


def write_required(view: F) -> F:
    """Decorator: the view runs only for an authenticated caller; g.key_id names the caller."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.key_id = authenticate()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("views.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    status = 200
    if request.method == "POST":
        check_csrf()
        if not configured_keys():
            raise ApiKeyNotConfigured("no API_KEY is configured: set one to use Hold Slayer")
        key = request.form.get("api_key", "")
        if key and match_key(key):
            session.clear()
            session["key_id"] = key_id(key)
            session.permanent = True
            csrf_token()
            return redirect(_safe_next(request.form.get("next")), code=303)
        log.warning("failed login from %s", request.remote_addr)
        error, status = "That key is not right.", 401
    return render_template("login.html", error=error, next=request.args.get("next", "")), status


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    check_csrf()
    session.clear()
    return redirect(url_for("auth.login"), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["logged_in"] = lambda: session_key_id() is not None
