"""python -m sim as its own process: the readiness line, --port-file, clear errors, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import gevent
from sim_esl_client import COMPANIES, REPO, RawEsl


def test_cli_prints_readiness_and_serves_esl(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim",
            "--esl-host",
            "127.0.0.1",
            "--esl-port",
            "0",
            "--password",
            "pw",
            "--companies",
            str(COMPANIES),
            "--phones",
            "1000:answer:2,1002:unregistered",
            "--speed",
            "20",
            "--port-file",
            str(port_file),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with gevent.Timeout(30, AssertionError("no readiness line")):
            line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("sim: ESL listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port_file.read_text() == str(port)
        c = RawEsl(port)
        c.login("pw")
        assert c.api("sofia_contact 1000@127.0.0.1") == "sofia/internal/sip:1000@127.0.0.1:5072;transport=udp"
        assert c.api("originate user/1002@127.0.0.1 &park()") == "-ERR USER_NOT_REGISTERED\n"
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        with gevent.Timeout(15, AssertionError("sim did not stop on SIGTERM")):
            rc = proc.wait()
    assert rc == 0


def test_cli_bad_companies_dir_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"number": "12", "name": "x", "outcome": "answer"}')
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "--esl-port", "0", "--companies", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "x.json" in proc.stderr and "invalid company scenario at number" in proc.stderr
