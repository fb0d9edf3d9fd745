"""A TCP proxy between the S3 client and moto that can "take the server down" and bring it back.

Stopping the proxy closes its port and every open connection while moto keeps the bucket, so
for the client the endpoint is dead (connection refused); `start()` reopens the same port.
`trip_after(pattern, n)` stops it when the client sends `pattern` (e.g. ``b"PUT /bucket/prefix/"``)
for the n-th time, before forwarding that request: an outage at an exact point of an upload.
"""

from __future__ import annotations

import socket
import threading


class FlakyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = 0  # chosen by the OS at the first start, then reused
        self.seen = 0  # requests matching the trip pattern, forwarded or not
        self._pattern: bytes | None = None
        self._trip_at = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def trip_after(self, pattern: bytes, count: int) -> None:
        with self._lock:
            self._pattern, self._trip_at, self.seen = pattern, count, 0

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind despite TIME_WAIT
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        listener.settimeout(0.05)  # the accept loop checks for stop() this often
        self.port, self._listener = listener.getsockname()[1], listener
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        """Close the port and drop every connection (callable from a pump thread)."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = set(self._sockets), set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        """stop(), then wait for every thread, so a test leaves no thread or port behind."""
        self.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"proxy threads still running: {alive}"

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"proxy-{target.__name__}")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            client.settimeout(None)  # accepted sockets inherit the listener's timeout
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                stopped = self._listener is not listener
                if not stopped:
                    self._sockets |= {client, upstream}
            if stopped:  # stop() ran while we connected: drop this connection too
                _close(client)
                _close(upstream)
                return
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, dest: socket.socket, from_client: bool) -> None:
        tail = b""  # a request line split across two reads is still seen once
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if from_client and self._trips(tail, data):
                self.stop()
                return
            tail = data[-256:]
            try:
                dest.sendall(data)
            except OSError:
                break
        _close(source)
        _close(dest)

    def _trips(self, tail: bytes, data: bytes) -> bool:
        with self._lock:
            if self._pattern is None:
                return False
            buffer = tail + data
            start = buffer.find(self._pattern)
            while start != -1:
                if start + len(self._pattern) > len(tail):  # a match that is new in this read
                    self.seen += 1
                    if self.seen == self._trip_at:
                        self._pattern = None
                        return True
                start = buffer.find(self._pattern, start + 1)
            return False


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on this socket
    except OSError:
        pass  # already shut down or never connected: closing is all that is left
    sock.close()
