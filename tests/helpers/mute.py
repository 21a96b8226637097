"""A loopback TCP proxy in front of PostgreSQL that can go mute: it then accepts connections and passes nothing
either way, as a PostgreSQL that hangs (or a network that drops packets without a reset) looks to a client."""

from __future__ import annotations

import contextlib
import socket
import threading


class MuteProxy:
    """Forwards 127.0.0.1:`port` to `target` until `mute()`; afterwards nothing is forwarded on any connection, old or
    new, though new connections are still accepted. With `target` None it is mute from the start."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self._target = target
        self._muted = threading.Event()
        if target is None:
            self._muted.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def mute(self) -> None:
        self._muted.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self._muted.is_set() or self._target is None:
                continue  # accepted, never answered
            upstream = socket.create_connection(self._target)
            self._sockets.append(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self._muted.is_set():
                    continue  # swallowed: the other side waits for ever
                sink.sendall(data)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
