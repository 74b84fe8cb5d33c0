"""A TCP proxy whose connections the test can cut, to drop the worker's ESL link for real."""

from __future__ import annotations

import socket

import gevent
import gevent.event
from gevent.server import StreamServer


class CuttableProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.open = gevent.event.Event()      # cleared: new connections are refused (closed at once)
        self.open.set()
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> int:
        self._server.start()
        return int(self._server.server_port)

    def stop(self) -> None:
        self.cut()
        self._server.stop()

    def cut(self) -> None:
        """Close every live connection (both sides), as a network failure would."""
        for a, b in self._pairs:
            for sock in (a, b):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self._pairs.clear()

    def _handle(self, client: socket.socket, _addr: object) -> None:
        if not self.open.is_set():
            client.close()
            return
        upstream = socket.create_connection(self.target)
        self.accepted += 1
        self._pairs.append((client, upstream))
        g = gevent.spawn(_pump, upstream, client)
        _pump(client, upstream)
        g.join()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
