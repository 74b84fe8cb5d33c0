"""The audio-fork endpoint against a raw-socket client that replays real mod_audio_fork traffic."""

from __future__ import annotations

import base64
import json
import re
import socket
import struct

import gevent
import pytest

from tests.esl.captures import CAPTURES
from tests.esl.fork_client import RawClient
from worker import audio_fork as af

AF = CAPTURES / "audio_fork"


def captured_request(log_name: str, target: str | None = None) -> tuple[bytes, str]:
    """The real upgrade request of a capture (request line rebuilt from its path), and its key."""
    text = (AF / log_name).read_text()
    path = re.search(r"CONNECT path='([^']*)'", text).group(1)
    headers = re.findall(r"req-header (.*)$", text, re.M)
    key = next(h.split(": ", 1)[1] for h in headers if h.startswith("Sec-WebSocket-Key"))
    lines = [f"GET {target or path} HTTP/1.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def captured_text_frames(log_name: str) -> list[str]:
    return re.findall(r"\] TEXT len=\d+(?: dt_ms=[\d.]+)?: (.*)$", (AF / log_name).read_text(), re.M)


@pytest.fixture
def server():
    s = af.ForkServer("127.0.0.1:0").start()
    yield s
    s.stop()


def _collect(stream: af.ForkStream) -> bytes:
    out = bytearray()
    while (chunk := stream.get(timeout=5)) is not None:
        out += chunk
    return bytes(out)


@pytest.mark.parametrize(
    ("log_name", "pcm_name", "frame_size"),
    [
        ("af_mono8k_sendback.frames.log", "af_mono8k_sendback.pcm", 320),
        ("af_mono16k.frames.log", "af_mono16k.pcm", 640),
        ("af_noproto.frames.log", "af_noproto.pcm", 640),
    ],
)
def test_replayed_fork_delivers_every_byte_in_order(server, log_name, pcm_name, frame_size) -> None:
    request, key = captured_request(log_name)
    path = re.search(r"CONNECT path='([^?']*)", (AF / log_name).read_text()).group(1)
    call_id = path.rstrip("/").rsplit("/", 1)[-1] or "root"
    if not path.startswith("/fork/"):  # captures made with other paths: same headers, our path
        request, key = captured_request(log_name, f"/fork/{call_id}")
    stream = server.expect(call_id)
    pcm = (AF / pcm_name).read_bytes()
    texts = captured_text_frames(log_name)

    client = RawClient(server.port, request)
    assert client.response.startswith("HTTP/1.1 101")
    assert f"Sec-WebSocket-Accept: {af.accept_key(key)}" in client.response
    assert "Sec-WebSocket-Protocol: audio.drachtio.org" in client.response
    assert stream.wait_connected(5)
    client.send(af.OP_TEXT, texts[0].encode())
    for i in range(0, len(pcm), frame_size):
        client.send(af.OP_BINARY, pcm[i : i + frame_size])
    for text in texts[1:]:
        client.send(af.OP_TEXT, text.encode())
    client.send(af.OP_CLOSE, struct.pack("!H", 1000))
    got = _collect(stream)
    assert client.recv_frame() == (af.OP_CLOSE, struct.pack("!H", 1000))
    client.close()

    assert got == pcm
    assert stream.metadata == json.loads(texts[0])
    assert stream.frames_received == len(pcm) // frame_size
    assert stream.close_code == 1000
    assert [stream.texts.get_nowait() for _ in range(stream.texts.qsize())] == texts[1:]
    assert stream.get(timeout=1) is None  # stays ended


def test_no_subprotocol_offered_none_selected(server) -> None:
    request, _ = captured_request("af_mono8k_sendback.frames.log", "/fork/c2")
    request = re.sub(rb"Sec-WebSocket-Protocol: [^\r]*\r\n", b"", request)
    server.expect("c2")
    client = RawClient(server.port, request)
    assert client.response.startswith("HTTP/1.1 101")
    assert "Sec-WebSocket-Protocol" not in client.response
    client.close()


def test_unknown_call_id_closed_with_policy(server) -> None:
    request, _ = captured_request("af_mono8k_sendback.frames.log", "/fork/nobody")
    client = RawClient(server.port, request)
    assert client.response.startswith("HTTP/1.1 101")
    client.send(af.OP_TEXT, b'{"callId":"nobody"}')
    client.send(af.OP_BINARY, b"\x00" * 320)
    op, payload = client.recv_frame()
    assert op == af.OP_CLOSE and struct.unpack("!H", payload[:2])[0] == af.CLOSE_POLICY
    client.send(af.OP_CLOSE, struct.pack("!H", 1000))
    with pytest.raises((EOFError, OSError)):
        client.recv_frame()
    client.close()
    assert "nobody" not in server._streams


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /fork/c HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "400"),
        (b"POST /fork/c HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "400"),
        (
            b"GET /other/c HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.b64encode(b"k" * 16) + b"\r\n\r\n",
            "404",
        ),
    ],
)
def test_bad_requests_get_http_errors(server, request_bytes, status) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(request_bytes)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    assert data.startswith(f"HTTP/1.1 {status}".encode())


def test_fragments_ping_send_text_and_release(server) -> None:
    stream = server.expect("c3")
    request, _ = captured_request("af_mono8k_sendback.frames.log", "/fork/c3?x=1")
    client = RawClient(server.port, request)
    client.send(af.OP_TEXT, b'{"callId":"c3"}')
    client.send(af.OP_BINARY, b"\x01" * 100, fin=False)
    client.send(af.OP_PING, b"hi")
    client.send(af.OP_CONT, b"\x02" * 220)
    assert client.recv_frame() == (af.OP_PONG, b"hi")
    assert stream.get(timeout=5) == b"\x01" * 100 + b"\x02" * 220
    assert stream.send_text({"type": "transcription", "data": {"text": "hi"}})
    assert client.recv_frame() == (af.OP_TEXT, b'{"type":"transcription","data":{"text":"hi"}}')
    server.release("c3")
    op, payload = client.recv_frame()
    assert op == af.OP_CLOSE and payload[:2] == struct.pack("!H", 1000)
    client.send(af.OP_CLOSE, struct.pack("!H", 1000))
    assert stream.get(timeout=5) is None
    client.close()
    with pytest.raises(TimeoutError):
        server.expect("c4").get(timeout=0.05)


def test_unmasked_frame_is_protocol_error(server) -> None:
    stream = server.expect("c5")
    request, _ = captured_request("af_mono8k_sendback.frames.log", "/fork/c5")
    client = RawClient(server.port, request)
    client.sock.sendall(af.encode_frame(af.OP_BINARY, b"\x00" * 10))  # no mask
    op, payload = client.recv_frame()
    assert op == af.OP_CLOSE and struct.unpack("!H", payload[:2])[0] == af.CLOSE_PROTOCOL
    assert stream.get(timeout=5) is None
    client.close()


def test_peer_vanishes_ends_stream(server) -> None:
    stream = server.expect("c6")
    request, _ = captured_request("af_mono8k_sendback.frames.log", "/fork/c6")
    client = RawClient(server.port, request)
    client.send(af.OP_BINARY, b"\x05" * 320)
    client.close()
    assert stream.get(timeout=5) == b"\x05" * 320
    assert stream.get(timeout=5) is None and stream.close_code is None


def test_many_concurrent_forks(server) -> None:
    n, frames = 100, 25
    pcm = (AF / "af_mono8k_sendback.pcm").read_bytes()[: 320 * frames]
    streams = [server.expect(f"m{i}") for i in range(n)]

    def run(i: int) -> None:
        request, _ = captured_request("af_mono8k_sendback.frames.log", f"/fork/m{i}")
        client = RawClient(server.port, request)
        client.send(af.OP_TEXT, json.dumps({"callId": f"m{i}"}, separators=(",", ":")).encode())
        for j in range(frames):
            client.send(af.OP_BINARY, pcm[j * 320 : (j + 1) * 320])
        client.send(af.OP_CLOSE, struct.pack("!H", 1000))
        client.recv_frame()
        client.close()

    clients = [gevent.spawn(run, i) for i in range(n)]
    results = [gevent.spawn(_collect, s) for s in streams]
    gevent.joinall(clients + results, timeout=30, raise_error=True)
    for i, (s, r) in enumerate(zip(streams, results, strict=True)):
        assert r.value == pcm and s.metadata == {"callId": f"m{i}"}


def test_frame_parser_splits_and_sizes() -> None:
    payloads = [b"", b"a" * 125, b"b" * 126, b"c" * 70000]
    data = b"".join(af.encode_frame(af.OP_BINARY, p, mask=b"\x01\x02\x03\x04") for p in payloads)
    for step in (1, 7, len(data)):
        parser = af.WsFrameParser()
        got = []
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
            got += [f.payload for f in parser.frames()]
        assert got == payloads
    parser = af.WsFrameParser(max_payload=10)
    parser.feed(af.encode_frame(af.OP_BINARY, b"x" * 11, mask=b"abcd"))
    with pytest.raises(af.WsProtocolError):
        parser.next_frame()


def test_url_for_and_bad_call_ids(server) -> None:
    assert server.url_for("abc-1") == f"ws://127.0.0.1:{server.port}/fork/abc-1"
    for bad in ["", "a/b", "a b", "../x", "x" * 200]:
        with pytest.raises(ValueError):
            server.url_for(bad)
    with pytest.raises(ValueError):
        af.ForkServer("nonsense")


@pytest.mark.parametrize("consumer_late", [False, True], ids=["backpressure", "drop-oldest"])
def test_slow_consumer(monkeypatch, consumer_late) -> None:
    """A slow consumer first holds the reader back (TCP backpressure); only a stuck one loses frames."""
    monkeypatch.setattr(af, "BACKPRESSURE_S", 0.2 if consumer_late else 5.0)
    server = af.ForkServer("127.0.0.1:0", max_frames=10).start()
    try:
        stream = server.expect("slow")
        request, _ = captured_request("af_mono8k_sendback.frames.log", "/fork/slow")
        client = RawClient(server.port, request)
        frames = [bytes([i]) * 320 for i in range(100)]
        for frame in frames:
            client.send(af.OP_BINARY, frame)
        client.send(af.OP_CLOSE, struct.pack("!H", 1000))
        if consumer_late:
            assert stream.ended.wait(10)  # the reader gave up waiting and dropped the oldest
        got = []
        while (chunk := stream.get(timeout=10)) is not None:
            got.append(chunk)
        client.close()
    finally:
        server.stop()
    if consumer_late:
        assert stream.dropped == 90 and got == frames[90:]
    else:
        assert stream.dropped == 0 and got == frames
