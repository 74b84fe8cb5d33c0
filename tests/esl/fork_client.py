"""A raw-socket WebSocket client that speaks like mod_audio_fork (the fork endpoint's tests)."""

from __future__ import annotations

import base64
import os
import socket
import struct

from worker import audio_fork as af


class RawClient:
    """Speaks like mod_audio_fork over a plain socket (masked frames, as RFC 6455 requires)."""

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(request)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "server closed during the handshake"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.response = head.decode()

    @classmethod
    def upgrade(cls, port: int, call_id: str) -> RawClient:
        """A client that has upgraded /fork/<call_id> (offering the subprotocol) and got its 101."""
        key = base64.b64encode(os.urandom(16)).decode()
        client = cls(port, (
            f"GET /fork/{call_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Protocol: {af.SUBPROTOCOL}\r\n\r\n").encode())
        assert client.response.startswith("HTTP/1.1 101"), client.response
        return client

    def send(self, opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True) -> None:
        frame = bytearray(af.encode_frame(opcode, payload, mask=os.urandom(4) if mask else None))
        if not fin:
            frame[0] &= 0x7F
        self.sock.sendall(bytes(frame))

    def recv_frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                pos = 2
                if n == 126:
                    n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
                if len(self.buf) >= pos + n:
                    op, payload = self.buf[0] & 0x0F, self.buf[pos : pos + n]
                    self.buf = self.buf[pos + n :]
                    return op, payload
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()
