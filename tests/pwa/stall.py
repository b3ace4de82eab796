"""A TCP proxy in front of the gateway that can stall its open connections
without closing them: what a phone's radio, a NAT that forgot the flow, or a
browser that froze the page does to an EventSource. No error, no FIN: the
stream just stops. New connections are forwarded as usual."""

from __future__ import annotations

import socket
import threading


class StallingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: list[dict] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            conn = {"stalled": threading.Event(), "socks": (client, upstream), "request": b""}
            with self._lock:
                self._conns.append(conn)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, conn), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, conn: dict) -> None:
        try:
            while data := src.recv(65536):
                if src is conn["socks"][0] and data[:8].split(b" ", 1)[0] in (b"GET", b"POST", b"HEAD"):
                    conn["request"] = data[:200]  # the latest request on this (kept-alive) connection
                if conn["stalled"].is_set():
                    continue  # swallowed: the connection stays open and says nothing
                dst.sendall(data)
        except OSError:
            pass
        if not conn["stalled"].is_set():
            for s in conn["socks"]:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stall_streams(self) -> int:
        """Stall the open event streams (other connections, which the browser
        reuses for its next requests, keep working)."""
        with self._lock:
            streams = [c for c in self._conns if b"/stream" in c["request"].split(b"\r\n", 1)[0] and not c["stalled"].is_set()]
            for conn in streams:
                conn["stalled"].set()
            return len(streams)

    def close(self) -> None:
        self._closed = True
        self.server.close()
        with self._lock:
            for conn in self._conns:
                for s in conn["socks"]:
                    s.close()
