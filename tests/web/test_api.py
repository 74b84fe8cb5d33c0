"""REST API with the Flask test client, real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tests.web.conftest import API_KEY, AUTH, SERVICE_KEY
from web import create_app
from worker import db, events, queueing

GOOD = {"number": "+1 (555) 010-0100", "intent": "cancel my gym membership"}


def _nothing_created(redis_conn, queue) -> None:
    assert db.Call.select().count() == 0
    assert db.CallEvent.select().count() == 0
    assert queue.count == 0
    assert redis_conn.keys("hs:history:*") == []


def test_launch_creates_call_event_and_job(client, redis_conn, queue) -> None:
    body = {**GOOD, "options": {"account_number": "42"}}
    resp = client.post("/api/calls/hold-slayer", json=body, headers=AUTH)
    assert resp.status_code == 202, resp.json
    call_id = resp.json["call_id"]
    assert resp.json["status"] == "queued"
    assert resp.json["links"]["self"] == f"/api/calls/{call_id}" == resp.headers["Location"]
    row = db.Call.get_by_id(call_id)
    assert (row.number, row.status, row.transfer_to) == ("+15550100100", "queued", "1000")
    # the job is really on the RQ queue, JSON-serialised, at the stable function path
    assert queue.get_job_ids() == [call_id]
    job = Job.fetch(call_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.func_name == "worker.job.hold_slayer"
    assert job.args[0]["call_id"] == call_id and job.args[0]["options"] == {"account_number": "42"}
    assert job.get_status() == JobStatus.QUEUED

    got = client.get(f"/api/calls/{call_id}", headers=AUTH).json
    assert got["status"] == "queued" and got["hold_seconds"] is None and got["created_at"].endswith("+00:00")
    assert got["events"]["count"] == 1 and got["events"]["last"]["type"] == "call.queued"
    evs = client.get(f"/api/calls/{call_id}/events", headers=AUTH).json["events"]
    assert [e["type"] for e in evs] == ["call.queued"]
    for ev in evs:
        queueing.validator("event").validate(ev)
    listing = client.get("/api/calls", headers=AUTH).json
    assert [c["call_id"] for c in listing["calls"]] == [call_id] and listing["total"] == 1


BAD = [
    # (body or raw bytes, headers, status, code, field)
    ({**GOOD, "number": "555-0100"}, AUTH, 400, "invalid_number", None),
    ({**GOOD, "number": "911"}, AUTH, 400, "emergency_number", None),
    ({**GOOD, "number": "+1 911"}, AUTH, 400, "emergency_number", None),
    ({**GOOD, "number": "112"}, AUTH, 400, "emergency_number", None),
    ({**GOOD, "number": "+1 900 555 0100"}, AUTH, 400, "premium_rate_number", None),
    ({**GOOD, "number": "+44 20 7946 0000"}, AUTH, 400, "destination_not_allowed", None),
    ({"intent": "x"}, AUTH, 400, "schema_violation", "number"),
    ({"number": "+15550100100"}, AUTH, 400, "schema_violation", "intent"),
    ({**GOOD, "options": {"max_hold_s": 5}}, AUTH, 400, "schema_violation", "options.max_hold_s"),
    ({**GOOD, "surprise": True}, AUTH, 400, "schema_violation", "surprise"),
    (b"{not json", AUTH, 400, "invalid_json", None),
    (b"", AUTH, 400, "invalid_json", None),
    (b"[1, 2]", AUTH, 400, "invalid_json", None),
    (b'{"number": NaN}', AUTH, 400, "invalid_json", None),
    ({**GOOD, "call_flow_id": 999}, AUTH, 404, "unknown_call_flow", None),
    ({**GOOD, "transfer_to": "4242"}, AUTH, 400, "unknown_device", None),
    (GOOD, {}, 401, "unauthorized", None),
    (GOOD, {"Authorization": "Bearer wrong"}, 401, "unauthorized", None),
    (GOOD, {"X-API-Key": "wrong"}, 401, "unauthorized", None),
    (GOOD, {"X-API-Key": ""}, 401, "unauthorized", None),
]


def test_bad_launches_create_nothing(client, redis_conn, queue) -> None:
    # One app per database for the whole table (an app per case would double this file's run time).
    for body, headers, status, code, field in BAD:
        case = f"{body!r} {headers!r}"
        if isinstance(body, bytes):
            raw_headers = {**headers, "Content-Type": "application/json"}
            resp = client.post("/api/calls/hold-slayer", data=body, headers=raw_headers)
        else:
            resp = client.post("/api/calls/hold-slayer", json=body, headers=headers)
        assert resp.status_code == status, (case, resp.json)
        assert resp.is_json, case
        err = resp.json["error"]
        assert err["code"] == code and err["message"], (case, err)
        if field is not None:
            assert err["details"]["field"] == field, (case, err)
        if status == 401:
            assert resp.headers["WWW-Authenticate"] == "Bearer", case
        _nothing_created(redis_conn, queue)


def test_no_device_configured(client, redis_conn, queue) -> None:
    db.Device.delete().execute()
    resp = client.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "unknown_device"
    _nothing_created(redis_conn, queue)


def test_writes_refused_without_configured_key(make_app, redis_conn, queue) -> None:
    app = make_app(api_key="", service_key="")
    c = app.test_client()
    for path, body in (("/api/calls/hold-slayer", GOOD), ("/api/devices", {"extension": "1"})):
        resp = c.post(path, json=body, headers={"Authorization": "Bearer "})
        assert resp.status_code == 503 and resp.json["error"]["code"] == "api_key_not_configured"
    assert c.get("/api/calls").status_code == 503          # reads need a key too
    assert db.Device.select().count() == 0
    _nothing_created(redis_conn, queue)


def test_service_key_and_x_api_key_accepted(client) -> None:
    r1 = client.post("/api/calls/hold-slayer", json=GOOD, headers={"X-API-Key": API_KEY})
    r2 = client.post("/api/calls/hold-slayer", json=GOOD, headers={"Authorization": f"Bearer {SERVICE_KEY}"})
    assert (r1.status_code, r2.status_code) == (202, 202)


def test_rate_limit_per_key(make_app, redis_conn, queue) -> None:
    app = make_app(launch_rate_per_minute=2)
    db.Device.create(extension="1000")
    c = app.test_client()
    codes = [c.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).status_code for _ in range(2)]
    assert codes == [202, 202]
    resp = c.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH)
    assert resp.status_code == 429 and resp.json["error"]["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert db.Call.select().count() == 2 and queue.count == 2        # the refused one left nothing
    # another key has its own budget
    assert c.post("/api/calls/hold-slayer", json=GOOD, headers={"X-API-Key": SERVICE_KEY}).status_code == 202


def test_keys_never_logged(client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH)
    client.post("/api/calls/hold-slayer", json=GOOD, headers={"Authorization": "Bearer not-the-key-xyz"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong API key" in text or "refused" in text
    assert API_KEY not in text and "not-the-key-xyz" not in text


def test_hangup_queued_call_cancels_job(client, redis_conn, queue) -> None:
    call_id = client.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).json["call_id"]
    assert client.post(f"/api/calls/{call_id}/hangup").status_code == 401
    resp = client.post(f"/api/calls/{call_id}/hangup", headers=AUTH)
    assert resp.status_code == 202 and resp.json["status"] == "canceled"
    assert resp.json["canceled_before_dialing"] is True
    assert queue.count == 0
    job = Job.fetch(call_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.CANCELED
    assert [e["type"] for e in events.history(redis_conn, call_id)] == ["call.queued", "call.ended"]
    again = client.post(f"/api/calls/{call_id}/hangup", headers=AUTH)
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert client.post("/api/calls/nope/hangup", headers=AUTH).status_code == 404


def test_dtmf_is_sent_as_control_message(client, redis_conn) -> None:
    call_id = client.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).json["call_id"]
    pubsub = redis_conn.pubsub()
    pubsub.subscribe(queueing.control_channel(call_id))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    resp = client.post(f"/api/calls/{call_id}/dtmf", json={"digits": "1#"}, headers=AUTH)
    assert resp.status_code == 202 and resp.json["delivered"] is True
    msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    pubsub.close()
    assert json.loads(msg["data"]) == {"action": "dtmf", "digits": "1#"}
    for body in ({"digits": "12x"}, {"digits": ""}, {}, {"digits": "1" * 33}, {"digits": "1", "x": 1}):
        bad = client.post(f"/api/calls/{call_id}/dtmf", json=body, headers=AUTH)
        assert bad.status_code == 400 and bad.json["error"]["code"] == "schema_violation"
    assert client.post(f"/api/calls/{call_id}/dtmf", json={"digits": "1"}).status_code == 401


def test_unknown_call_and_routes_are_json(client) -> None:
    for resp, status, code in (
        (client.get("/api/calls/0123", headers=AUTH), 404, "not_found"),
        (client.get("/api/nothing-here", headers=AUTH), 404, "not_found"),
        (client.delete("/api/calls", headers=AUTH), 405, "method_not_allowed"),
        (client.post("/api/devices", data=b"x" * 70_000, headers=AUTH), 413, "request_entity_too_large"),
        (client.get("/api/calls?per_page=1000", headers=AUTH), 400, "invalid_request"),
        (client.get("/api/calls?status=bogus", headers=AUTH), 400, "invalid_request"),
    ):
        assert resp.status_code == status and resp.is_json, resp.data[:200]
        assert resp.json["error"]["code"] == code


def test_call_list_pagination(client) -> None:
    ids = [client.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).json["call_id"] for _ in range(3)]
    page1 = client.get("/api/calls?per_page=2", headers=AUTH).json
    page2 = client.get(page1["next"], headers=AUTH).json
    assert page1["total"] == 3 and len(page1["calls"]) == 2 and page2["next"] is None
    assert sorted(c["call_id"] for c in page1["calls"] + page2["calls"]) == sorted(ids)
    assert client.get("/api/calls?status=canceled", headers=AUTH).json["total"] == 0


FLOW = {
    "name": "Acme billing",
    "number": "+1 555 010 0100",
    "steps": [{"type": "LISTEN", "timeout_s": 8}, {"type": "DTMF", "digits": "2"}, {"type": "HOLD"}],
}


def test_call_flow_crud_and_versions(client) -> None:
    assert client.post("/api/call-flows", json=FLOW).status_code == 401
    created = client.post("/api/call-flows", json=FLOW, headers=AUTH)
    assert created.status_code == 201, created.json
    v1 = created.json
    assert v1["number"] == "+15550100100" and v1["version"] == 1
    dup = client.post("/api/call-flows", json=FLOW, headers=AUTH)
    assert dup.status_code == 409
    new_steps = {**FLOW, "steps": [{"type": "HOLD"}]}
    updated = client.put(f"/api/call-flows/{v1['id']}", json=new_steps, headers=AUTH)
    assert updated.status_code == 200
    v2 = updated.json
    assert v2["version"] == 2 and v2["id"] != v1["id"] and [v["version"] for v in v2["versions"]] == [1, 2]
    old = client.get(f"/api/call-flows/{v1['id']}", headers=AUTH).json
    assert old["steps"] == FLOW["steps"]                                  # the old version is kept
    listing = client.get("/api/call-flows", headers=AUTH).json["call_flows"]
    assert [(f["id"], f["version"]) for f in listing] == [(v2["id"], 2)]
    # a launch by number picks the newest version; by an old id too
    call_id = client.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).json["call_id"]
    assert db.Call.get_by_id(call_id).call_flow_id == v2["id"]
    by_old_id = {**GOOD, "call_flow_id": v1["id"]}
    call_id = client.post("/api/calls/hold-slayer", json=by_old_id, headers=AUTH).json["call_id"]
    assert db.Call.get_by_id(call_id).call_flow_id == v2["id"]
    renamed = client.put(f"/api/call-flows/{v2['id']}", json={**FLOW, "name": "Other"}, headers=AUTH)
    assert renamed.status_code == 409
    assert client.delete(f"/api/call-flows/{v2['id']}", headers=AUTH).status_code == 204
    assert client.get(f"/api/call-flows/{v1['id']}", headers=AUTH).status_code == 404
    assert client.get("/api/call-flows", headers=AUTH).json["call_flows"] == []
    again = client.post("/api/call-flows", json=FLOW, headers=AUTH)         # the name is free again
    assert again.status_code == 201 and again.json["version"] == 3


FLOW_BAD = [
    ({**FLOW, "steps": []}, "schema_violation", "steps"),
    ({**FLOW, "steps": [{"type": "DTMF", "digits": "12x"}]}, "schema_violation", "steps[0].digits"),
    ({**FLOW, "steps": [{"type": "DANCE"}]}, "schema_violation", "steps[0].type"),
    ({**FLOW, "steps": [{"type": "WAIT"}]}, "schema_violation", "steps[0].seconds"),
    ({**FLOW, "number": "911"}, "emergency_number", None),
    ({**FLOW, "number": "+1 976 555 0100"}, "premium_rate_number", None),
]


def test_call_flow_validation(client) -> None:
    for body, code, field in FLOW_BAD:
        resp = client.post("/api/call-flows", json=body, headers=AUTH)
        assert resp.status_code == 400 and resp.json["error"]["code"] == code, (body, resp.json)
        if field:
            assert resp.json["error"]["details"]["field"] == field, (body, resp.json)
    assert db.CallFlow.select().count() == 0


def test_devices(client) -> None:
    assert client.post("/api/devices", json={"extension": "1001"}).status_code == 401
    resp = client.post("/api/devices", json={"extension": "1001", "name": "kitchen"}, headers=AUTH)
    assert resp.status_code == 201 and resp.json["enabled"] is True
    assert client.post("/api/devices", json={"extension": "1001"}, headers=AUTH).status_code == 409
    bad = client.post("/api/devices", json={"extension": "1001,user/evil"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json["error"]["details"]["field"] == "extension"
    exts = [d["extension"] for d in client.get("/api/devices", headers=AUTH).json["devices"]]
    assert exts == ["1000", "1001"]
    launched = client.post("/api/calls/hold-slayer", json={**GOOD, "transfer_to": "1001"}, headers=AUTH)
    assert db.Call.get_by_id(launched.json["call_id"]).transfer_to == "1001"
    assert client.delete("/api/devices/1001", headers=AUTH).status_code == 204
    assert client.delete("/api/devices/1001", headers=AUTH).status_code == 404


def test_healthz(client, make_app) -> None:
    assert client.get("/healthz").json == {"ok": True, "redis": "ok", "database": "ok"}


def test_healthz_reports_redis_down(make_app, database_url) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                            # nothing listens there now
    app = make_app(redis_url=f"redis://127.0.0.1:{port}/0")
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.json["ok"] is False and resp.json["database"] == "ok"
    assert resp.json["redis"].startswith("down")


def test_reads_need_the_key_unless_public(client, make_app) -> None:
    for path in ("/api/calls", "/api/call-flows", "/api/devices", "/ws/events"):
        resp = client.get(path)
        assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized", path
    assert client.get("/api/calls", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    settings = client.application.extensions["hs.settings"]
    public = create_app({"TESTING": True, "PUBLIC_READS": True, "SETTINGS": settings})
    assert public.test_client().get("/api/devices").status_code == 200
    assert public.test_client().post("/api/devices", json={"extension": "9"}).status_code == 401


def test_database_down_at_start_then_up(make_app, redis_conn, tmp_path) -> None:
    missing = tmp_path / "not-yet"                       # SQLite cannot open a file in a missing directory
    url = f"sqlite:///{missing / 'hs.db'}"
    app = make_app(database_url=url)                     # starts anyway
    c = app.test_client()
    health = c.get("/healthz")
    assert health.status_code == 503 and health.json["database"].startswith("down")
    resp = c.get("/api/devices", headers=AUTH)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "database_unavailable"
    assert c.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).status_code == 503
    assert redis_conn.keys("rq:job:*") == []
    missing.mkdir()                                      # the database comes up: same app, same url
    assert c.get("/healthz").status_code == 200
    assert c.post("/api/devices", json={"extension": "1000"}, headers=AUTH).status_code == 201
    assert c.post("/api/calls/hold-slayer", json=GOOD, headers=AUTH).status_code == 202


def test_redis_down_launch_is_503_and_leaves_nothing(make_app) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    app = make_app(redis_url=f"redis://127.0.0.1:{port}/0")
    db.Device.create(extension="1000")
    resp = app.test_client().post("/api/calls/hold-slayer", json=GOOD, headers=AUTH)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "redis_unavailable"
    assert db.Call.select().count() == 0 and db.CallEvent.select().count() == 0
