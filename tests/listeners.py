"""Real TCP and UDP listeners standing in for Logstash's inputs in the tests."""
from __future__ import annotations

import json
import socket
import threading
import time


class _Collecting:
    events: list[dict]

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.events) < count:
            time.sleep(0.05)
        return list(self.events)

    def close(self) -> None:
        self.sock.close()


class _TcpServer:
    """Listens on a free loopback port and hands every accepted connection to _on_connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._on_connection(conn)

    def _on_connection(self, conn: socket.socket) -> None:
        raise NotImplementedError


class TcpJsonLinesListener(_TcpServer, _Collecting):
    """Accepts connections and collects newline-delimited JSON, like Logstash's json_lines."""

    def __init__(self):
        self.events: list[dict] = []
        self._lock = threading.Lock()
        super().__init__()

    def _on_connection(self, conn: socket.socket) -> None:
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while chunk := conn.recv(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                with self._lock:
                    self.events.extend(json.loads(line) for line in lines if line.strip())


class UdpJsonListener(_Collecting):
    """Collects one JSON event per datagram, like Logstash's udp input with the json codec."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.events.extend(json.loads(line) for line in data.split(b"\n") if line.strip())


class StalledListener(_TcpServer):
    """Accepts TCP connections and never reads from them."""

    def __init__(self):
        self.held: list[socket.socket] = []
        super().__init__()

    def _on_connection(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


class TcpProxy:
    """A TCP forwarder to a real server that a test can cut (drop connections, refuse new
    ones) and restore: a network outage of that server, without stopping it for anyone else."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listen()

    def _listen(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port or 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()

    def _accept(self, listening: socket.socket) -> None:
        while True:
            try:
                client, _ = listening.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        try:  # wakes the accept() blocked in another thread, which a bare close() does not
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def restore(self) -> None:
        self._listen()

    def close(self) -> None:
        self.cut()
