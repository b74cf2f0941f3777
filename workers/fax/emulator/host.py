"""Where the host meets an emulated modem: a pty (the pyserial URL is the slave's path)
and, optionally, a TCP port (``socket://127.0.0.1:PORT``) as a serial-over-IP bridge does.

The slave end stays open here too, so a host can close and reopen the port without the
pty going away. Output is dropped rather than blocking when nobody reads it, as a modem's
output is lost when no terminal listens; a TCP client, while connected, gets the output
instead of the pty.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from collections.abc import Callable


class HostLink:
    def __init__(self, on_data: Callable[[bytes], None], *, tcp_port: int | None = None) -> None:
        self._on_data = on_data
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        if tcp_port is not None:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", tcp_port))
            self._listener.listen(1)
        self._thread = threading.Thread(target=self._pump, name=f"modem-host {self.path}")
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        return self.path

    @property
    def tcp_url(self) -> str | None:
        if self._listener is None:
            return None
        host, port = self._listener.getsockname()
        return f"socket://{host}:{port}"

    def _pump(self) -> None:
        while not self._closing:
            fds: list[object] = [self._master, self._wake_r]
            if self._listener is not None:
                fds.append(self._listener)
            client = self._client
            if client is not None:
                fds.append(client)
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                return
            for fd in readable:
                if fd is self._listener:
                    conn, _ = self._listener.accept()
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self._lock:
                        old, self._client = self._client, conn
                    if old is not None:
                        old.close()
                    continue
                try:
                    data = (
                        os.read(self._master, 65536) if fd is self._master else fd.recv(65536)  # type: ignore[attr-defined]
                    )
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    if fd is not self._master:
                        with self._lock:
                            if self._client is fd:
                                self._client = None
                        fd.close()  # type: ignore[attr-defined]
                    continue
                self._on_data(data)

    def write(self, data: bytes) -> None:
        with self._lock:
            client = self._client
            if client is not None:
                try:
                    client.sendall(data)
                except OSError:
                    self._client = None
                return
            view = memoryview(data)
            while view and not self._closing:
                try:
                    n = os.write(self._master, view)
                    view = view[n:]
                except BlockingIOError:
                    _, writable, _ = select.select([], [self._master], [], 1.0)
                    if not writable:
                        return
                except OSError:
                    return

    def close(self) -> None:
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2)
        with self._lock:
            for s in (self._client, self._listener):
                if s is not None:
                    s.close()
            self._client = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
