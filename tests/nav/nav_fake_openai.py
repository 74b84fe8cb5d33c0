"""A fake OpenAI-compatible server over real HTTP (gevent.pywsgi on 127.0.0.1:0).

Implements /v1/chat/completions, /v1/audio/transcriptions and /v1/audio/speech.
Each route answers from a script: a list of replies consumed in order (the last
one repeats).  A reply is (status, body) or the string "hang" (hold the request
until the server stops: the client's timeout fires).  Every request is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer
from werkzeug.wrappers import Request

Reply = tuple[int, Any] | str


def chat_reply(content: str) -> tuple[int, dict[str, Any]]:
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def error_reply(status: int, message: str = "boom") -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "server_error", "code": None}}


class FakeOpenAI:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[dict[str, Any]] = []
        self.got_request = Event()
        self._stop = Event()
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None, error_log=None)

    def start(self) -> FakeOpenAI:
        self.server.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.stop(timeout=2)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts[path] = list(replies)

    def _next(self, path: str) -> Reply:
        queue = self.scripts.get(path) or [error_reply(404, f"no script for {path}")]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        req = Request(environ)
        record: dict[str, Any] = {"path": req.path, "headers": dict(req.headers)}
        if req.mimetype == "application/json":
            record["json"] = req.get_json(silent=True)
        else:
            record["form"] = req.form.to_dict()
            record["files"] = {k: f.read() for k, f in req.files.items()}
        self.requests.append(record)
        self.got_request.set()
        reply = self._next(req.path)
        if reply == "hang":
            self._stop.wait(timeout=30)
            reply = error_reply(503, "hung")
        assert not isinstance(reply, str)
        status, body = reply
        if isinstance(body, bytes):
            start_response(f"{status} X", [("Content-Type", "audio/wav"), ("Content-Length", str(len(body)))])
            return [body]
        data = json.dumps(body).encode()
        start_response(
            f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        gevent.idle()
        return [data]
