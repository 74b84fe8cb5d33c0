"""What does the stand-in switch's media path cost?  CPU of ONE `python -m sim` per 100 calls.

    python bench/sim_media.py --calls 100 200 500 [--speed 1] [--seconds 10]

For each N: starts `python -m sim` (its own process, real TCP), originates N
calls to a company on endless hold music over a few real ESL connections,
starts a mono 8k `uuid_audio_fork` on each to a plain WebSocket sink in this
process, waits until every fork streams, then reads the switch's CPU from
/proc/<pid>/stat over `--seconds` of wall time.  The sink reads each socket
about every SINK_READ_S (it only counts bytes: it must not compete with the
switch for the CPU), and checks the byte stream's framing on the first fork.

Prints a table, then one JSON line per N:
`{"calls", "speed", "sim_cores", "sim_cores_per_100_calls", "frames_per_call_second", "forks_connected"}`.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from worker.audio_fork import parse_upgrade, upgrade_response  # noqa: E402

NUMBER = "15550108800"
PASSWORD = "ClueCon"  # noqa: S105 - the stand-in switch's default ESL password
SINK_READ_S = 0.05  # the sink drains each socket this often (seconds)
ESL_CONNECTIONS = 8  # originates run in parallel over this many ESL connections
FRAME_WIRE_BYTES = 2 + 4 + 320  # a masked mono 8k binary frame: header, mask key, 20 ms of L16


def company() -> dict:
    return {
        "number": "+" + NUMBER,
        "name": "Media Bench Co",
        "ring_seconds": 0.2,
        "outcome": "answer",
        "hold": {
            "music": {"file": "/usr/share/asterisk/moh/macroform-the_simplicity.wav"},
            "duration_seconds": 36000,
        },
    }


class Esl:
    """A minimal inbound ESL client: auth, then blocking `api` commands (no event subscription)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self._read()  # auth/request
        assert self._command(f"auth {PASSWORD}").startswith("+OK")

    def _read(self) -> tuple[dict[str, str], bytes]:
        while b"\n\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\n\n", 1)
        hdrs = dict(line.split(": ", 1) for line in head.decode().split("\n"))
        n = int(hdrs.get("Content-Length", "0"))
        while len(self.buf) < n:
            self.buf += self._recv()
        body, self.buf = self.buf[:n], self.buf[n:]
        return hdrs, body

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("ESL closed")
        return data

    def _command(self, cmd: str) -> str:
        self.sock.sendall(cmd.encode() + b"\n\n")
        hdrs, _ = self._read()
        return hdrs.get("Reply-Text", "")

    def api(self, cmd: str) -> str:
        self.sock.sendall(f"api {cmd}\n\n".encode())
        _, body = self._read()
        return body.decode()


class Sink:
    """The audio-fork endpoint: accepts WebSocket upgrades, then only counts bytes."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.bytes: dict[int, int] = {}
        self.first: bytearray = bytearray()  # the first fork's stream, to check its framing
        self.server = StreamServer(("127.0.0.1", 0), self._handle, backlog=1024)
        self.server.start()
        self.reader = gevent.spawn(self._read_loop)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.server_port}/fork"

    def _handle(self, sock: socket.socket, addr: tuple) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(4096)
            if not data:
                return
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        sock.sendall(upgrade_response(parse_upgrade(head)))  # the worker's own (pure) upgrade
        sock.setblocking(False)
        if not self.socks:
            self.first += rest
        self.bytes[sock.fileno()] = len(rest)
        self.socks.append(sock)
        gevent.sleep(3600 * 24)  # keep the socket referenced; the read loop drains it

    def _read_loop(self) -> None:
        while True:
            gevent.sleep(SINK_READ_S)
            for i, sock in enumerate(list(self.socks)):
                fd = sock.fileno()
                while True:
                    try:
                        data = sock._sock.recv(262144)  # type: ignore[attr-defined]  # the raw, non-blocking socket
                    except BlockingIOError:
                        break
                    except OSError:
                        data = b""
                    if not data:
                        break
                    self.bytes[fd] = self.bytes.get(fd, 0) + len(data)
                    if i == 0 and len(self.first) < 1_000_000:
                        self.first += data

    def total(self) -> int:
        return sum(self.bytes.values())

    def stop(self) -> None:
        self.reader.kill()
        self.server.stop(timeout=1)
        for s in self.socks:
            s.close()


def check_framing(stream: bytes) -> tuple[int, int]:
    """(text frames, binary frames) of a client stream; raises on a malformed or unmasked frame."""
    i = texts = binaries = 0
    while i + 2 <= len(stream):
        b0, b1 = stream[i], stream[i + 1]
        if not b1 & 0x80:
            raise AssertionError(f"unmasked client frame at byte {i}")
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            n, j = int.from_bytes(stream[i + 2 : i + 4], "big"), i + 4
        if j + 4 + n > len(stream):
            break
        op = b0 & 0x0F
        if op == 2:
            if n != 320:
                raise AssertionError(f"binary frame of {n} bytes, expected 320")
            binaries += 1
        elif op == 1:
            texts += 1
        i = j + 4 + n
    return texts, binaries


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(n: int, speed: float, seconds: float, companies: Path, profile: str | None = None) -> dict:
    env = dict(os.environ, SIM_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
    port_file = companies.parent / f"port-{n}"
    prof = ["-m", "cProfile", "-o", f"{profile}.{n}", "-m"] if profile else ["-m"]
    proc = subprocess.Popen(
        [sys.executable, *prof, "sim", "--esl-port", "0", "--companies", str(companies), "--phones", "",
         "--speed", str(speed), "--port-file", str(port_file), "--log-level", "WARNING"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    sink = Sink()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"sim did not start: {line!r}")
        port = int(port_file.read_text())
        conns = [Esl(port) for _ in range(ESL_CONNECTIONS)]
        uuids = [str(uuid.uuid4()) for _ in range(n)]
        failures: list[str] = []

        def dial(k: int) -> None:  # connection k originates calls k, k + K, k + 2K, ...
            esl = conns[k]
            for u in uuids[k::ESL_CONNECTIONS]:
                reply = esl.api(f"originate {{origination_uuid={u}}}sofia/gateway/trunk/{NUMBER} &park()")
                if not reply.startswith("+OK"):
                    failures.append(reply)
                    continue
                reply = esl.api(f'uuid_audio_fork {u} start {sink.url} mono 8k {{"callId":"{u}"}}')
                if not reply.startswith("+OK"):
                    failures.append(reply)

        gevent.joinall([gevent.spawn(dial, k) for k in range(ESL_CONNECTIONS)], raise_error=True)
        if failures:
            raise RuntimeError(f"{len(failures)} calls failed, e.g. {failures[0]!r}")
        with gevent.Timeout(60, RuntimeError(f"only {len(sink.socks)} of {n} forks connected")):
            while len(sink.socks) < n or min(sink.bytes.values()) < 10 * FRAME_WIRE_BYTES:
                gevent.sleep(0.1)
        gevent.sleep(1.0)  # let the start-up burst (connects, ESL replies) pass before measuring
        cpu0, bytes0, t0 = cpu_seconds(proc.pid), sink.total(), time.monotonic()
        gevent.sleep(seconds)  # the measurement window: /proc is read at its two ends
        cpu1, bytes1, t1 = cpu_seconds(proc.pid), sink.total(), time.monotonic()
        wall = t1 - t0
        texts, binaries = check_framing(bytes(sink.first))
        if texts < 1 or binaries < 10:
            raise AssertionError(f"first fork: {texts} text and {binaries} binary frames")
        cores = (cpu1 - cpu0) / wall
        return {
            "calls": n,
            "speed": speed,
            "sim_cores": round(cores, 4),
            "sim_cores_per_100_calls": round(cores * 100 / n, 4),
            "frames_per_call_second": round((bytes1 - bytes0) / FRAME_WIRE_BYTES / n / wall, 2),
            "forks_connected": len(sink.socks),
        }
    finally:
        sink.stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, nargs="+", default=[100])
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=10.0, help="wall seconds of the CPU measurement window")
    p.add_argument(
        "--profile", help="run the switch under cProfile, writing FILE.<calls> (slower: not a measurement)"
    )
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hs-sim-media-"))
    companies = work / "companies"
    companies.mkdir()
    (companies / "bench.json").write_text(json.dumps(company()))
    results = [run(n, args.speed, args.seconds, companies, args.profile) for n in args.calls]
    print(f"{'calls':>6} {'speed':>6} {'sim cores':>10} {'cores/100 calls':>16} {'frames/call-s':>14}")
    for r in results:
        print(
            f"{r['calls']:>6} {r['speed']:>6g} {r['sim_cores']:>10.3f} {r['sim_cores_per_100_calls']:>16.3f} "
            f"{r['frames_per_call_second']:>14.2f}"
        )
    print(f"machine load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
