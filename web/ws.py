"""/ws/events: the Redis event stream relayed over a WebSocket (flask-sock).

    ws://host/ws/events               every event of every call
    ws://host/ws/events?call_id=ID    one call: its history first, then live events

The first message is `{"type": "ws.subscribed", "call_id": ..., "ts": ..., "data": {"channel": ...}}`:
from then on no published event is missed.  Each further message is one event
JSON exactly as published (schemas/event.json).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import redis
from flask import Flask, current_app, request
from flask_sock import ConnectionClosed, Sock

from worker import events

log = logging.getLogger(__name__)

sock = Sock()
POLL_S = 1.0                         # seconds between checks that the browser is still there
_CALL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@sock.route("/ws/events")
def events_ws(ws: Any) -> None:
    call_id = request.args.get("call_id") or ""
    if call_id and not _CALL_ID_RE.match(call_id):
        ws.close(reason=1008, message="bad call_id")
        return
    conn: redis.Redis = current_app.extensions["hs.redis"]
    channel = events.channel_for(call_id) if call_id else events.CHANNEL_ALL
    pubsub = conn.pubsub()
    try:
        pubsub.subscribe(channel)
        while pubsub.get_message(timeout=POLL_S) is None:    # the subscribe confirmation
            if not ws.connected:
                return
        ws.send(json.dumps({"type": "ws.subscribed", "call_id": call_id, "ts": time.time(),
                            "data": {"channel": channel}}))
        seen: set[tuple[str, float]] = set()
        if call_id:
            for ev in events.history(conn, call_id):
                seen.add((ev["type"], ev["ts"]))
                ws.send(json.dumps(ev))
        while ws.connected:
            msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_S)
            if msg is None:
                continue
            data = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
            if seen:
                ev = json.loads(data)
                if (ev.get("type"), ev.get("ts")) in seen:
                    continue
            ws.send(data)
    except ConnectionClosed:
        pass
    except redis.RedisError as exc:
        log.warning("ws %s: redis failed: %s", call_id or "*", exc)
        ws.close(reason=1011, message="event stream unavailable")
    finally:
        pubsub.close()


def init_app(app: Flask) -> None:
    sock.init_app(app)
