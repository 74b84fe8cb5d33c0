"""The switch's media path: one media clock for all channels, non-blocking fork writes, a stuck peer.

A fork whose WebSocket peer stops reading must not stall anyone else: its
backlog is capped at BUFFER_S of audio, then audio is dropped and
`mod_audio_fork::buffer_overrun` fires once (like mod_audio_fork's buffer),
and the stream carries on, whole frames only, when the peer reads again.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import gevent
import gevent.event
import pytest
from sim_esl_client import Msg, RawEsl, WsSink
from test_sim_audio_fork import NUMBER, SCENARIO

from sim import audio_fork, media_clock
from sim.audio_fork import FrameReader
from sim.esl_server import SimSwitch
from worker.audio_fork import parse_upgrade, upgrade_response

SPEED = 100.0  # fills the kernel socket buffers of a stuck fork in a second or two
OVERRUN_TIMEOUT_S = 30.0


@pytest.mark.parametrize(
    ("speed", "slots", "per_wake", "wake_s"),
    [
        (1.0, 5, 1, 0.004),  # 20 ms frames: 5 slots of channels, one slot per 4 ms wake-up
        (2.0, 2, 1, 0.005),
        (4.0, 1, 1, 0.005),  # 5 ms frames: one slot, one frame per wake-up
        (20.0, 1, 4, 0.004),  # 1 ms frames: 4 frames per 4 ms wake-up
        (40.0, 1, 8, 0.004),
        (0.5, 10, 1, 0.004),
    ],
)
def test_schedule(speed: float, slots: int, per_wake: int, wake_s: float) -> None:
    plan = media_clock.schedule(speed)
    assert (plan.slots, plan.frames_per_wake) == (slots, per_wake)
    assert plan.wake_s == pytest.approx(wake_s)
    assert plan.frame_wall_s == pytest.approx(0.020 / speed)  # each channel still gets speed frames per 20 ms


def test_schedule_refuses_a_stopped_clock() -> None:
    with pytest.raises(ValueError):
        media_clock.schedule(0)


class StuckSink:
    """A WebSocket endpoint that completes the upgrade, then reads nothing until `drain()`."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited: a tiny window
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.sock: socket.socket | None = None
        self.ready = gevent.event.Event()
        self.reader = FrameReader()
        self._g = gevent.spawn(self._accept)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.listener.getsockname()[1]}/stuck"

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        head, rest = buf.split(b"\r\n\r\n", 1)
        sock.sendall(upgrade_response(parse_upgrade(head)))  # the worker's own (pure) upgrade
        self.reader.feed(rest)
        self.sock = sock
        self.ready.set()

    def drain(self, frames: int, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        """Read until `frames` whole frames arrived; every frame must parse (masked frames unmasked)."""
        assert self.sock is not None
        got: list[tuple[int, bytes]] = []
        with gevent.Timeout(timeout, AssertionError(f"fewer than {frames} frames from the stuck fork")):
            while len(got) < frames:
                item = self.reader.next()
                if item is None:
                    data = self.sock.recv(65536)
                    assert data, "the switch closed the stuck fork"
                    self.reader.feed(data)
                    continue
                got.append(item)
        return got

    def close(self) -> None:
        self._g.kill()
        if self.sock is not None:
            self.sock.close()
        self.listener.close()


def is_overrun(m: Msg) -> bool:
    return m.get("Event-Subclass") == "mod_audio_fork::buffer_overrun"


@pytest.fixture
def two_calls(tmp_path: Path):
    (tmp_path / "fork_co.json").write_text(json.dumps(SCENARIO))
    sw = SimSwitch(companies_dir=tmp_path, phones="", speed=SPEED).start()
    c = RawEsl(sw.port)
    c.login()
    c.command("event plain CHANNEL_PARK CUSTOM mod_audio_fork::buffer_overrun mod_audio_fork::connect")
    uuids = ["0a0b0c0d-1111-4222-8333-44445555000" + str(i) for i in (1, 2)]
    for u in uuids:
        dial = f"{{origination_uuid={u},ignore_early_media=true}}sofia/gateway/trunk/{NUMBER}"
        c.command(f"bgapi originate {dial} &park()")
        c.wait_event(lambda m, u=u: m.name == "CHANNEL_PARK" and m.get("Unique-ID") == u)
    yield sw, c, uuids
    c.close()
    sw.stop()


def test_a_stuck_peer_overruns_alone_and_resumes_with_whole_frames(two_calls) -> None:
    sw, c, (stuck_uuid, ok_uuid) = two_calls
    stuck, ok = StuckSink(), WsSink()
    try:
        meta = '{"callId":"s"}'
        assert c.api(f"uuid_audio_fork {stuck_uuid} start {stuck.url} mono 8k {meta}") == "+OK Success\n"
        assert c.api(f"uuid_audio_fork {ok_uuid} start {ok.url()} mono 8k") == "+OK Success\n"
        ev = c.wait_event(is_overrun, OVERRUN_TIMEOUT_S)
        assert ev.get("Unique-ID") == stuck_uuid
        fork = sw.channel(stuck_uuid).forks["audio_fork"]
        seen = len(ok.binary())
        ok.wait_frames(seen + 200)  # the healthy fork kept streaming while the other one was stuck
        assert fork.frames_dropped > 0 and fork.closed is False
        frames = stuck.drain(400)  # the peer reads again: the backlog, then live audio, all whole frames
        assert frames[0] == (1, b'{"callId":"s"}')
        assert {(op, len(p)) for op, p in frames[1:]} == {(2, 320)}
        c.api("uuid_exists x")  # a round trip: any second buffer_overrun would be in the log by now
        overruns = [m for m in c.log if m.get("Event-Subclass") == "mod_audio_fork::buffer_overrun"]
        assert len(overruns) == 1  # once per session
        assert {len(p) for _, p, _ in ok.binary()} == {320}
    finally:
        stuck.close()
        ok.stop()


def test_hangup_with_a_stuck_peer_still_ends_the_fork(two_calls) -> None:
    sw, c, (stuck_uuid, _) = two_calls
    stuck = StuckSink()
    try:
        c.api(f"uuid_audio_fork {stuck_uuid} start {stuck.url} mono 8k")
        c.wait_event(is_overrun, OVERRUN_TIMEOUT_S)
        fork = sw.channel(stuck_uuid).forks["audio_fork"]
        assert c.api(f"uuid_kill {stuck_uuid}").startswith("+OK")
        assert fork.closed
        frames = stuck.drain(120)  # what was queued, then ...
        while frames[-1][0] != 8:  # ... the Close the switch sent after it
            frames += stuck.drain(1)
        assert frames[-1] == (8, (1000).to_bytes(2, "big"))
        assert sw.channel(stuck_uuid) is None
    finally:
        stuck.close()


@pytest.mark.parametrize(
    ("elapsed", "phase", "served", "due"),
    [
        (0.0, 0.0, 0, 1),  # the first frame at once
        (0.019, 0.0, 1, 0),  # on time: nothing more until the next 20 ms
        (0.020, 0.0, 1, 1),
        (0.003, 0.004, 0, 0),  # a slot with a 4 ms phase waits for it
        (0.004, 0.004, 0, 1),
        (0.100, 0.0, 1, 5),  # served 80 ms late: all 5 owed frames in one wake-up
    ],
)
def test_frames_due(elapsed: float, phase: float, served: int, due: int) -> None:
    assert media_clock.frames_due(elapsed, phase, 0.020, served) == due


def test_wire_frames_are_masked_frames_with_fresh_keys() -> None:
    payloads = [bytes(range(i, i + 160)) * 2 for i in range(5)]
    head = audio_fork.frame_header(2, 320)
    rows = bytes(audio_fork.wire_frames(head, payloads, 320))
    reader = FrameReader()
    reader.feed(rows)
    assert [reader.next() for _ in payloads] == [(2, p) for p in payloads]
    keys = {rows[i * 328 + 4 : i * 328 + 8] for i in range(5)}
    assert len(keys) == 5  # one random key per frame


def test_flush_all_writes_each_fork_its_own_frames_in_order() -> None:
    import numpy as np

    pairs = [socket.socketpair() for _ in range(2)]
    forks = []
    for (ours, _), (mix, rate) in zip(pairs, [("mono", 8000), ("mono", 16000)], strict=True):
        fork = audio_fork.ForkSession("c", "ws://127.0.0.1:1/", mix, rate, None, lambda s, b: None)
        ours.setblocking(False)
        fork._fd, fork.connected = ours.fileno(), True  # as if connected: only the writing is tested
        forks.append(fork)
    frames = [np.arange(i * 160, (i + 1) * 160, dtype=np.int16) for i in range(3)]
    for f in frames:
        for fork in forks:
            fork.push(f, None)
    forks[1].send_text("after")  # the audio pushed before it is written first
    audio_fork.flush_all(forks)
    for (_, theirs), size in zip(pairs, (320, 640), strict=True):
        reader = FrameReader()
        reader.feed(theirs.recv(65536))
        got = []
        while (item := reader.next()) is not None:
            got.append(item)
        binaries = [p for op, p in got if op == 2]
        assert [len(p) for p in binaries] == [size] * 3
        assert [op for op, _ in got] == ([2, 2, 2] if size == 320 else [2, 2, 2, 1])
        if size == 320:
            assert binaries == [f.tobytes() for f in frames]
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
