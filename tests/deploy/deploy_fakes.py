"""Test doubles for running lua/ scripts under lupa, and mod_curl's `curl` API.

The fake `freeswitch` table and session record every call in Lua tables the
tests read back.  `ModCurl` reproduces mod_curl's argument handling
(src/mod/applications/mod_curl/mod_curl.c, curl_function: space-split with
single quotes, url-decoded post data, `json` output as print_json writes it)
and makes the request for real, over a socket, so the star-code test talks to a
real HTTP server.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import lupa

LUA_DIR = Path(__file__).resolve().parents[2] / "lua"

FAKE_FREESWITCH = r"""
rec = { logs = {}, api = {}, events = {} }
freeswitch = {}
function freeswitch.consoleLog(level, msg) rec.logs[#rec.logs + 1] = { level, msg } end
function freeswitch.getGlobalVariable(name) return GLOBALS[name] end
function freeswitch.API()
  local api = {}
  function api:execute(cmd, args)
    rec.api[#rec.api + 1] = { cmd, args }
    return API_HANDLER(cmd, args)
  end
  function api:executeString(s)
    local cmd, args = string.match(s, "^(%S+)%s*(.*)$")
    return self:execute(cmd, args)
  end
  return api
end
function freeswitch.Event(name, subclass)
  local ev = { name = name, subclass = subclass, headers = {} }
  function ev:addHeader(k, v) self.headers[#self.headers + 1] = { k, v } end
  function ev:addBody(b) self.body = b end
  function ev:fire() rec.events[#rec.events + 1] = self end
  return ev
end
function make_session(vars, digits)
  local s = { vars = vars, calls = {}, up = true, digits = digits }
  function s:ready() return self.up end
  function s:answer() self.calls[#self.calls + 1] = { "answer" } end
  function s:getVariable(k) return self.vars[k] end
  function s:setVariable(k, v) self.vars[k] = v end
  function s:get_uuid() return "0f8e5a7c-0000-4000-8000-000000000001" end
  function s:streamFile(f) self.calls[#self.calls + 1] = { "streamFile", f } end
  function s:playAndGetDigits(mn, mx, tries, timeout, term, file, bad, regex)
    self.calls[#self.calls + 1] = { "playAndGetDigits", file, tries, timeout, regex }
    return self.digits
  end
  function s:hangup(cause)
    self.calls[#self.calls + 1] = { "hangup", cause }
    self.up = false
  end
  return s
end
"""


def split_fs_args(data: str) -> list[str]:
    """switch_separate_string(data, ' '): split on spaces outside single quotes, drop the quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    started = False
    for ch in data:
        if ch == "'":
            quoted = not quoted
            started = True
        elif ch == " " and not quoted:
            if started:
                out.append("".join(cur))
            cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        out.append("".join(cur))
    return out


@dataclass
class CurlRequest:
    url: str
    method: str
    body: str
    headers: dict[str, str]
    json_output: bool
    connect_timeout: int | None = None
    timeout: int | None = None


def parse_curl_args(args: str) -> CurlRequest:
    """The option loop of mod_curl's curl_function."""
    argv = split_fs_args(args)
    if not argv:
        raise ValueError("curl: no url")
    req = CurlRequest(url=argv[0], method="get", body="", headers={}, json_output=False)
    i = 1
    while i < len(argv):
        word = argv[i].lower()
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if word == "json":
            req.json_output = True
        elif word in ("get", "head"):
            req.method = word
        elif word in ("post", "put", "patch", "delete"):
            req.method = word
            req.body = urllib.parse.unquote(nxt or "")
            i += 1
        elif word == "content-type" and nxt is not None:
            req.headers["Content-Type"] = nxt
            i += 1
        elif word == "append_headers" and nxt is not None:
            name, _, value = nxt.partition(":")
            req.headers[name.strip()] = value.strip()
            i += 1
        elif word == "connect-timeout" and nxt is not None:
            req.connect_timeout = int(nxt)
            i += 1
        elif word == "timeout" and nxt is not None:
            req.timeout = int(nxt)
            i += 1
        i += 1
    return req


class ModCurl:
    """API_HANDLER for the fake freeswitch.API(): runs `curl` for real."""

    def __init__(self) -> None:
        self.requests: list[CurlRequest] = []

    def __call__(self, cmd: str, args: str) -> str:
        if cmd != "curl":
            return f"-ERR {cmd} Command not found!\n"
        req = parse_curl_args(args)
        self.requests.append(req)
        parts = urllib.parse.urlsplit(req.url)
        status, body = 0, None
        try:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=req.timeout or 10)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(req.method.upper(), path, body=req.body.encode(), headers=req.headers)
            resp = conn.getresponse()
            status, body = resp.status, resp.read().decode()
            conn.close()
        except OSError:
            status, body = 0, None
        if not req.json_output:
            return body or ""
        out: dict[str, Any] = {"status_code": status}
        if body:
            out["body"] = body
        out["headers"] = []
        # json-c's layout: spaces after separators, "/" escaped
        return json.dumps(out).replace("/", "\\/")


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ApiServer:
    """A real HTTP server on 127.0.0.1:0 answering every request with one canned reply."""

    status: int = 201
    reply: dict[str, Any] = field(default_factory=dict)
    requests: list[Captured] = field(default_factory=list)
    _server: HTTPServer | None = None

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", "0"))
                owner.requests.append(
                    Captured("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                payload = json.dumps(owner.reply).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class LuaRun:
    lua: Any
    session: Any

    @property
    def rec(self) -> Any:
        return self.lua.globals().rec

    def var(self, name: str) -> Any:
        return self.session.vars[name]

    def calls(self) -> list[tuple[Any, ...]]:
        return [tuple(c.values()) for c in self.session.calls.values()]

    def events(self) -> list[dict[str, Any]]:
        out = []
        for ev in self.rec.events.values():
            headers = {h[1]: h[2] for h in ev.headers.values()}
            out.append({"name": ev.name, "subclass": ev.subclass, "headers": headers})
        return out

    def played(self) -> list[str]:
        return [c[1] for c in self.calls() if c[0] == "streamFile"]


def run_script(
    name: str,
    argv: list[str] | None = None,
    variables: dict[str, str] | None = None,
    globals_: dict[str, str] | None = None,
    digits: str = "",
    api_handler: Any = None,
    ready: bool = True,
) -> LuaRun:
    """Run lua/<name> as mod_lua would: fresh state, global `session` and `argv`."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    g = lua.globals()
    g.package.path = f"{LUA_DIR}/?.lua"
    g.GLOBALS = lua.table_from(globals_ or {})
    g.API_HANDLER = api_handler or ModCurl()
    lua.execute(FAKE_FREESWITCH)
    session = g.make_session(lua.table_from(variables or {}), digits)
    session.up = ready
    g.session = session
    g.argv = lua.table_from({i: a for i, a in enumerate([name, *(argv or [])])})
    lua.execute((LUA_DIR / name).read_text())
    return LuaRun(lua, session)
