"""A TCP forwarder on 127.0.0.1 that can be cut and restored: a server going away for one
client (its connections dropped, its port closed: connections refused) without stopping
the server itself, which other tests use at the same time."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.receivers import free_port

UPSTREAM_CONNECT_TIMEOUT_S = 5.0
"""Named timeout: how long the proxy waits to reach the real server for a new client."""


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream`` while started; ``cut`` drops every
    connection and closes the port, ``start`` opens the same port again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._guard = threading.Lock()

    def start(self) -> None:
        """Listen on the port and forward every connection to the upstream server."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, UPSTREAM_CONNECT_TIMEOUT_S)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._guard:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and close the port (new connections are refused)."""
        if self._listener is not None:
            # shutdown before close: it wakes the thread blocked in accept (close does not).
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._guard:
            for end in self._sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            self._sockets.clear()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
