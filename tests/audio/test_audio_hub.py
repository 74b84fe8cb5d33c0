"""The audio hub over real WebSocket connections: the fork server in hub-read mode, real detectors.

Clients speak like mod_audio_fork (masked frames over a real socket on 127.0.0.1); the audio is
a real asterisk prompt and opsound hold music.  Every byte reaches its call in order, the events
are those of a lone detector fed the same audio, and ping, fragments, close, EOF, protocol errors
and a consumer that falls behind are handled by the hub's reads as by a connection's own greenlet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import numpy as np
import pytest
from audio_helpers import MOH, PROMPTS, add_noise, level, pcm, silence, sound

from tests.esl.fork_client import RawClient
from worker import audio_fork as af
from worker.audio.detector import HoldDetector
from worker.audio_hub import AudioHub

WAIT_S = 10.0   # bound of every wait on an event (never a sleep)


class Sink:
    """A call as the hub sees it, recording what it is handed."""

    def __init__(self, call_id: str, stream: af.ForkStream, detector: Any, rate: int = 8000) -> None:
        self.call_id = call_id
        self.audio_rate = rate
        self.fork_stream = stream
        self.detector = detector
        self.audio = bytearray()
        self.events: list[dict] = []
        self.closed = gevent.event.Event()
        self.rounds = 0

    def on_audio(self, chunk: bytes, arrival: float, detector: Any, events: list, closed: bool) -> None:
        assert detector is self.detector
        self.rounds += 1
        self.audio += chunk
        self.events += [e.to_dict() for e in events]
        if closed:
            assert not self.closed.is_set(), "closed twice"
            self.closed.set()


@pytest.fixture
def server() -> Iterator[af.ForkServer]:
    s = af.ForkServer("127.0.0.1:0", hub_reads=True).start()
    yield s
    s.stop()


@pytest.fixture
def hub() -> Iterator[AudioHub]:
    lags: list[float] = []
    h = AudioHub(tick_s=0.02, on_lag=lags.append)
    h.lags = lags  # type: ignore[attr-defined]
    yield h
    h.stop()


def prompt_pcm(rate: int = 8000) -> bytes:
    x = level(sound(f"{PROMPTS}/queue-periodic-announce.wav", rate), -20)
    return pcm(add_noise(np.concatenate([silence(0.3, rate), x, silence(1.5, rate)])))


def test_every_call_gets_its_audio_in_order_and_the_events_of_a_lone_detector(server, hub):
    music = level(sound(f"{MOH}/manolo_camp-morning_coffee.wav", 16000, 20.0, 6.0), -20)
    audio = {"a": prompt_pcm(8000), "b": pcm(add_noise(np.concatenate([silence(0.5, 16000), music])))}
    rates = {"a": 8000, "b": 16000}
    sinks = {cid: Sink(cid, server.expect(cid), HoldDetector(sample_rate=rates[cid]), rates[cid])
             for cid in audio}
    for sink in sinks.values():
        hub.add(sink)
    clients = {cid: RawClient.upgrade(server.port, cid) for cid in audio}
    for cid, client in clients.items():
        client.send(af.OP_TEXT, f'{{"callId":"{cid}"}}'.encode())
    frame = {cid: 2 * rates[cid] // 50 for cid in audio}
    longest = max(-(-len(a) // frame[c]) for c, a in audio.items())
    for i in range(longest):            # the two forks interleaved, frame by frame
        for cid, client in clients.items():
            chunk = audio[cid][i * frame[cid]:(i + 1) * frame[cid]]
            if chunk:
                client.send(af.OP_BINARY, chunk)
    for client in clients.values():
        client.send(af.OP_CLOSE, struct.pack("!H", 1000))
    for cid, sink in sinks.items():
        assert sink.closed.wait(WAIT_S), cid
        assert clients[cid].recv_frame() == (af.OP_CLOSE, struct.pack("!H", 1000))   # close echoed
        clients[cid].close()
        assert len(sink.audio) == len(audio[cid]), (cid, len(sink.audio), len(audio[cid]))
        assert bytes(sink.audio) == audio[cid]
        assert sink.fork_stream.metadata == {"callId": cid}
        assert sink.fork_stream.close_code == 1000
        alone = HoldDetector(sample_rate=rates[cid])
        assert sink.events == [e.to_dict() for e in alone.feed(audio[cid]) + alone.flush()]
        assert sink.events, "the prompt makes state events"
    assert len(hub) == 0                # closed calls leave the hub
    assert hub.lags and all(lag >= 0 for lag in hub.lags)
    assert hub.rounds < longest         # many frames per round, not a round per frame


def test_ping_fragments_text_and_release_in_hub_reads(server, hub):
    stream = server.expect("c1")
    sink = Sink("c1", stream, None)
    hub.add(sink)
    client = RawClient.upgrade(server.port, "c1")
    client.send(af.OP_TEXT, b'{"callId":"c1"}')
    client.send(af.OP_BINARY, b"\x01" * 100, fin=False)
    client.send(af.OP_PING, b"hi")
    client.send(af.OP_CONT, b"\x02" * 220)
    assert client.recv_frame() == (af.OP_PONG, b"hi")
    client.send(af.OP_TEXT, b"later text")
    assert stream.texts.get(timeout=WAIT_S) == "later text"
    assert bytes(sink.audio) == b"\x01" * 100 + b"\x02" * 220   # reassembled before the text came
    server.release("c1")
    op, payload = client.recv_frame()
    assert op == af.OP_CLOSE and payload[:2] == struct.pack("!H", 1000)
    client.send(af.OP_CLOSE, struct.pack("!H", 1000))
    assert sink.closed.wait(WAIT_S)
    client.close()


def test_unmasked_frame_closes_with_protocol_error(server, hub):
    sink = Sink("c2", server.expect("c2"), None)
    hub.add(sink)
    client = RawClient.upgrade(server.port, "c2")
    client.send(af.OP_BINARY, b"\x00" * 320, mask=False)
    op, payload = client.recv_frame()
    assert op == af.OP_CLOSE and struct.unpack("!H", payload[:2])[0] == af.CLOSE_PROTOCOL
    assert sink.closed.wait(WAIT_S)
    assert sink.fork_stream.close_code == af.CLOSE_PROTOCOL
    client.close()


def test_peer_vanishing_ends_the_call_audio(server, hub):
    sink = Sink("c3", server.expect("c3"), HoldDetector())
    hub.add(sink)
    client = RawClient.upgrade(server.port, "c3")
    client.send(af.OP_BINARY, b"\x00\x01" * 160)
    client.close()                       # no close frame: EOF
    assert sink.closed.wait(WAIT_S)
    assert bytes(sink.audio) == b"\x00\x01" * 160
    assert sink.fork_stream.close_code is None


def test_a_consumer_behind_makes_the_hub_read_less_and_drop_the_oldest_without_waiting():
    """Nobody takes the frames: poll() stops reading at half the queue (TCP holds the rest), and a
    read that brings more than the queue holds drops the oldest at once (the hub never waits)."""
    server = af.ForkServer("127.0.0.1:0", max_frames=10, hub_reads=True).start()
    try:
        stream = server.expect("c4")
        client = RawClient.upgrade(server.port, "c4")
        assert stream.wait_connected(WAIT_S)
        frames = [bytes([i]) * 320 for i in range(50)]
        for f in frames:
            client.send(af.OP_BINARY, f)
        client.send(af.OP_CLOSE, struct.pack("!H", 1000))
        taken = []
        while not stream.ended.is_set() or stream.buffered:
            if stream._reader is None and not stream.ended.is_set():
                gevent.idle()            # the connection's greenlet has not handed over yet
                continue
            stream.poll()
            assert len(stream._items) <= 10
            if len(stream._items) >= 5 or stream.ended.is_set():
                data, _, closed = stream.take(10 * 320)
                taken += [data[i:i + 320] for i in range(0, len(data), 320)]
            else:
                gevent.idle()            # let the client's bytes reach the socket
        assert stream.frames_received == 50
        assert len(taken) + stream.dropped == 50
        assert taken == sorted(taken) and taken[-1] == frames[-1]   # in order, the newest kept
        client.close()
    finally:
        server.stop()


def test_the_hub_goes_away_when_no_call_is_left_and_comes_back(server, hub):
    sink = Sink("c5", server.expect("c5"), None)
    hub.add(sink)
    assert hub._loop is not None
    hub.remove(sink)
    assert len(hub) == 0
    hub._loop.join(WAIT_S)
    assert hub._loop is None
    hub.add(sink)
    assert hub._loop is not None
    server.release("c5")
    assert sink.closed.wait(WAIT_S)     # a released fork that never connected still ends


def test_bad_hub_settings():
    with pytest.raises(ValueError):
        AudioHub(tick_s=0)
    with pytest.raises(ValueError):
        af.ForkServer("127.0.0.1:0", read_pace_s=-1)


def test_a_broken_detector_does_not_cost_any_call_its_audio(server, hub):
    """A detector bug (here: a detector without its classifier) loses that round's events, but every
    call still gets its audio, its media time and its close."""
    broken = HoldDetector()
    broken.classifier = None  # type: ignore[assignment]
    sinks = [Sink("c6", server.expect("c6"), broken), Sink("c7", server.expect("c7"), HoldDetector())]
    for sink in sinks:
        hub.add(sink)
    clients = [RawClient.upgrade(server.port, sink.call_id) for sink in sinks]
    audio = prompt_pcm(8000)[: 320 * 100]
    for i in range(0, len(audio), 320):
        for client in clients:
            client.send(af.OP_BINARY, audio[i:i + 320])
    for client in clients:
        client.send(af.OP_CLOSE, struct.pack("!H", 1000))
    for sink, client in zip(sinks, clients, strict=True):
        assert sink.closed.wait(WAIT_S)
        assert bytes(sink.audio) == audio
        client.close()


class _Endless:
    """A fork that always has one 20 ms frame ready (for the hub's scheduling alone)."""

    def poll(self) -> None:
        pass

    def take(self, limit: int) -> tuple[bytes, float, bool]:
        import time
        return bytes(320), time.monotonic(), False

    def notify_when(self, event: Any, size: int) -> None:
        pass


class _Counted(Sink):
    def __init__(self, call_id: str, order: list[str]) -> None:
        super().__init__(call_id, _Endless(), None)  # type: ignore[arg-type]
        self.order = order
        self.served = gevent.event.Event()

    def on_audio(self, chunk: bytes, arrival: float, detector: Any, events: list, closed: bool) -> None:
        super().on_audio(chunk, arrival, detector, events, closed)
        self.order.append(self.call_id)
        if self.rounds >= 3:
            self.served.set()


def test_cohorts_split_the_calls_evenly_and_a_round_serves_one_cohort():
    order: list[str] = []
    hub = AudioHub(tick_s=0.04, cohorts=4, cohort_min_calls=1)
    sinks = [_Counted(f"c{i}", order) for i in range(8)]
    try:
        hub._stopped = True           # no loop of its own: the rounds run by hand
        for s in sinks:
            hub.add(s)
        assert hub._loop is None
        assert hub.cohort_sizes() == [2, 2, 2, 2]
        of = hub._cohort_of
        for cohort in range(4):
            order.clear()
            hub.run_once(cohort)
            assert sorted(order) == sorted(s.call_id for s in sinks if of[id(s)] == cohort)
        order.clear()
        hub.run_once()                # every call (a round woken by media waiting)
        assert sorted(order) == sorted(s.call_id for s in sinks)
        gone = [s for s in sinks if of[id(s)] == 1]
        for s in gone:
            hub.remove(s)
        assert hub.cohort_sizes() == [2, 0, 2, 2]
        newcomer = _Counted("late", order)
        hub.add(newcomer)
        assert of[id(newcomer)] == 1   # the smallest cohort takes a new call
    finally:
        hub.stop()


def test_the_loop_serves_the_cohorts_in_turn_skipping_empty_ones():
    """Between two rounds of one call every other cohort with calls has exactly one round."""
    order: list[str] = []
    hub = AudioHub(tick_s=0.04, cohorts=4, cohort_min_calls=1)
    sinks = [_Counted(f"c{i}", order) for i in range(3)]     # cohort 3 stays empty
    try:
        for s in sinks:
            hub.add(s)
        for s in sinks:
            assert s.served.wait(WAIT_S)
        seq = list(order)
        assert len(seq) >= 9
        first = seq.index(seq[0], 1)
        cycle = seq[:first]
        assert sorted(cycle) == ["c0", "c1", "c2"]
        assert seq[:len(seq) - len(seq) % 3] == (cycle * len(seq))[:len(seq) - len(seq) % 3]
    finally:
        hub.stop()


def test_a_new_cohort_opens_only_when_every_open_one_is_full_enough():
    hub = AudioHub(cohorts=4, cohort_min_calls=3)
    hub._stopped = True
    sinks = [_Counted(f"c{i}", []) for i in range(14)]
    sizes = []
    for s in sinks:
        hub.add(s)
        sizes.append(hub.cohort_sizes())
    assert sizes[2] == [3, 0, 0, 0]      # one round a tick while few calls
    assert sizes[5] == [3, 3, 0, 0]
    assert sizes[11] == [3, 3, 3, 3]
    assert sizes[13] == [4, 4, 3, 3]     # then every cohort takes its share


def test_bad_cohorts():
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="cohorts"):
            AudioHub(cohorts=bad)  # type: ignore[arg-type]
