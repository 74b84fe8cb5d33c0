"""HTML pages: login (signed session, CSRF), the launch form, the call page, the RQ dashboard."""

from __future__ import annotations

import base64
import re

import pytest

from tests.web.conftest import API_KEY, AUTH
from worker import db


def _csrf(html: bytes) -> str:
    m = re.search(rb'name="csrf_token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1).decode()


def _login(client) -> str:
    page = client.get("/login")
    token = _csrf(page.data)
    resp = client.post("/login", data={"api_key": API_KEY, "csrf_token": token, "next": "/"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/")
    return _csrf(client.get("/").data)


def test_pages_need_login(client) -> None:
    for path in ("/", "/calls/abc"):
        resp = client.get(path)
        assert resp.status_code == 303 and "/login" in resp.headers["Location"]


def test_login_checks_key_and_csrf(client) -> None:
    token = _csrf(client.get("/login").data)
    bad = client.post("/login", data={"api_key": "wrong", "csrf_token": token})
    assert bad.status_code == 401 and b"not right" in bad.data
    no_csrf = client.post("/login", data={"api_key": API_KEY})
    assert no_csrf.status_code == 403 and no_csrf.json["error"]["code"] == "csrf_failed"
    evil = {"api_key": API_KEY, "csrf_token": token, "next": "//evil.example/"}
    evil_next = client.post("/login", data=evil)
    assert evil_next.status_code == 303 and "evil" not in evil_next.headers["Location"]
    # the signed session holds no key
    cookie = client.get_cookie("session")
    assert cookie is not None and API_KEY not in cookie.value


def test_form_launches_call_and_shows_page(client, queue) -> None:
    token = _login(client)
    resp = client.post("/calls", data={
        "csrf_token": token, "number": "+1 555 010 0100", "intent": "billing question",
        "call_flow_id": "", "transfer_to": "1000", "account_number": "778",
    })
    assert resp.status_code == 303, resp.data[:300]
    call_id = resp.headers["Location"].rsplit("/", 1)[1]
    call = db.Call.get_by_id(call_id)
    assert call.number == "+15550100100" and call.options_json == {"account_number": "778"}
    assert queue.get_job_ids() == [call_id]
    page = client.get(f"/calls/{call_id}")
    assert page.status_code == 200 and b"+15550100100" in page.data and b"call.queued" in page.data
    assert call_id.encode() in client.get("/").data                       # in the recent calls list


def test_form_errors_rerender_and_create_nothing(client, queue) -> None:
    token = _login(client)
    resp = client.post("/calls", data={"csrf_token": token, "number": "911", "intent": "help"})
    assert resp.status_code == 400 and b"emergency" in resp.data and b'value="911"' in resp.data
    no_csrf = client.post("/calls", data={"number": "+15550100100", "intent": "x"})
    assert no_csrf.status_code == 403
    assert db.Call.select().count() == 0 and queue.count == 0


def test_session_writes_to_api_need_csrf_header(client) -> None:
    token = _login(client)
    body = {"number": "+15550100100", "intent": "x"}
    assert client.post("/api/calls/hold-slayer", json=body).status_code == 403
    ok = client.post("/api/calls/hold-slayer", json=body, headers={"X-CSRF-Token": token})
    assert ok.status_code == 202


def test_logout(client) -> None:
    token = _login(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/").status_code == 303


def test_rotated_key_ends_sessions(make_app, client) -> None:
    _login(client)
    assert client.get("/").status_code == 200
    client.application.extensions["hs.settings"] = type(client.application.extensions["hs.settings"])(
        **{**client.application.extensions["hs.settings"].__dict__, "api_key": "new-key", "service_key": ""}
    )
    assert client.get("/").status_code == 303


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}


def test_rq_dashboard_behind_key_and_reads_json_jobs(client, queue) -> None:
    denied = client.get("/rq/")
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/rq/", headers=_basic("wrong")).status_code == 401
    assert client.get("/rq/", headers=_basic(API_KEY)).status_code == 200
    call_id = client.post("/api/calls/hold-slayer", json={"number": "+15550100100", "intent": "x"},
                          headers=AUTH).json["call_id"]
    listed = client.get("/rq/0/data/jobs/hs-web-test/queued/8/asc/1.json", headers=_basic(API_KEY))
    assert listed.status_code == 200, listed.data[:300]
    assert [j["id"] for j in listed.json["jobs"]] == [call_id]
    info = client.get(f"/rq/0/data/job/{call_id}.json", headers=_basic(API_KEY)).json
    assert info["status"] == "queued" and info["origin"] == "hs-web-test"
    pages = (f"/rq/0/view/job/{call_id}", "/rq/0/view/jobs", "/rq/0/view/workers", "/rq/0/data/workers.json")
    for page in pages:
        assert client.get(page, headers=_basic(API_KEY)).status_code == 200, page
    queues = client.get("/rq/0/data/queues.json", headers=_basic(API_KEY)).json["queues"]
    assert {q["name"]: q["count"] for q in queues}["hs-web-test"] == 1
    # a state change must come from our own pages
    cross = client.post("/rq/queue/hs-web-test/queued/empty",
                        headers={**_basic(API_KEY), "Origin": "http://evil.example"})
    assert cross.status_code == 403 and queue.count == 1
    assert client.get("/rq/requeue/hs-web-test", headers=_basic(API_KEY)).status_code == 403


@pytest.mark.parametrize("path", ["/rq/", "/rq/0/data/queues.json"])
def test_rq_dashboard_via_session(client, path) -> None:
    _login(client)
    assert client.get(path).status_code == 200
