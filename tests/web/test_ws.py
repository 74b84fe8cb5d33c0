"""/ws/events over a real server socket: gevent WSGIServer on port 0 and a websocket-client."""

from __future__ import annotations

import json

import pytest
import websocket
from gevent.pywsgi import WSGIServer

from tests.web.conftest import API_KEY, AUTH
from worker import db, events

HEADER = [f"X-API-Key: {API_KEY}"]


@pytest.fixture
def server(app):
    srv = WSGIServer(("127.0.0.1", 0), app, log=None)
    srv.start()
    yield f"127.0.0.1:{srv.server_port}"
    srv.stop(timeout=2)


def _open(server: str, query: str = "") -> websocket.WebSocket:
    ws = websocket.create_connection(f"ws://{server}/ws/events{query}", timeout=10, header=HEADER)
    hello = json.loads(ws.recv())
    assert hello["type"] == "ws.subscribed"          # from here on nothing published is missed
    return ws


def test_relays_published_events_for_one_call(server, app, redis_conn) -> None:
    call = db.Call.create(number="+15550100100", intent="x")
    before = events.publish(redis_conn, call.id, "call.queued", {"number": call.number})
    ws = _open(server, f"?call_id={call.id}")
    try:
        assert json.loads(ws.recv()) == before          # history first
        other = db.Call.create(number="+15550100100", intent="y")
        events.publish(redis_conn, other.id, "call.dialing", {})   # another call: not relayed here
        live = events.publish(redis_conn, call.id, "hold.started", {"after_s": 12.5})
        assert json.loads(ws.recv()) == live
    finally:
        ws.close()


def test_relays_every_call_without_filter(server, app, redis_conn) -> None:
    ws = _open(server)
    try:
        client = app.test_client()
        body = {"number": "+15550100100", "intent": "x"}
        resp = client.post("/api/calls/hold-slayer", json=body, headers=AUTH)
        ev = json.loads(ws.recv())
        for _ in range(100):     # Pub/Sub ignores the db number: skip other test runs' events
            if ev["call_id"] == resp.json["call_id"]:
                break
            ev = json.loads(ws.recv())
        assert ev["type"] == "call.queued" and ev["call_id"] == resp.json["call_id"]
        assert set(ev) == {"type", "call_id", "ts", "data"}
    finally:
        ws.close()


def test_bad_call_id_is_refused(server) -> None:
    ws = websocket.create_connection(f"ws://{server}/ws/events?call_id=bad%20id", timeout=10, header=HEADER)
    try:
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1008 and data[2:] == b"bad call_id"
    finally:
        ws.close()


def test_handshake_needs_the_key(server) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(f"ws://{server}/ws/events", timeout=10)
    assert info.value.status_code == 401
