"""A site on a network link of its own, which a test can take down like a cable pulled.

Two network namespaces created for the test, joined by a veth pair:

* the **site** namespace (``10.231.0.2/30``), where the site's worker runs
  (``ip netns exec``);
* the **hub** namespace (``10.231.0.1/30``), where a relay listens on the hub's address
  and forwards to the fleet's Redis on the host's loopback.

The relay's listening socket is created inside the hub namespace by a thread that
enters it (``setns``) and leaves again; the socket stays in the hub, the relay's own
connections to Redis are made from the host. ``down()`` sets the site's end of the link
down: nothing is closed or refused, packets just stop, which is what a cut cable or a
dead router does to the site's TCP connections (unlike ``tests/netcut.py``, which closes
them). Every address lives in these two namespaces only; nothing on the host changes.

The telephone network (the simulated far ends' records) is reached over a Unix socket
relay: Unix sockets with a path are not confined to a network namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from tests.netcut import NetCut

CLONE_NEWNET = 0x40000000
SITE_ADDRESS = "10.231.0.2"
HUB_ADDRESS = "10.231.0.1"
RELAY_PORT = 6379


def available() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return None if probe.returncode == 0 else f"ip netns: {probe.stderr.strip()}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def _in_namespace(name: str, make: Callable[[], socket.socket]) -> socket.socket:
    """Run ``make`` on a thread inside namespace ``name``; the socket it makes stays there."""
    made: dict[str, socket.socket | BaseException] = {}

    def enter_make_leave() -> None:
        home = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        back = os.open(home, os.O_RDONLY)
        try:
            _setns(f"/var/run/netns/{name}")
            try:
                made["socket"] = make()
            finally:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.setns(back, CLONE_NEWNET)
        except BaseException as exc:  # handed to the caller
            made["error"] = exc
        finally:
            os.close(back)

    thread = threading.Thread(target=enter_make_leave)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["socket"]  # type: ignore[return-value]


def _relay(server: socket.socket, target: tuple[str, int], stop: threading.Event) -> None:
    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=NetCut._pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


class SiteLink:
    """The site's own link to the fleet's Redis (on ``127.0.0.1:redis_port``)."""

    def __init__(self, redis_port: int, workdir: Path) -> None:
        tag = secrets.token_hex(3)
        self.site_ns, self.hub_ns = f"ff-site-{tag}", f"ff-hub-{tag}"
        self.site_dev, hub_dev = f"ffs{tag}", f"ffh{tag}"
        self._stop = threading.Event()
        self._servers: list[socket.socket] = []
        _ip("netns", "add", self.site_ns)
        _ip("netns", "add", self.hub_ns)
        try:
            _ip("link", "add", self.site_dev, "type", "veth", "peer", "name", hub_dev)
            _ip("link", "set", self.site_dev, "netns", self.site_ns)
            _ip("link", "set", hub_dev, "netns", self.hub_ns)
            for ns, dev, address in (
                (self.site_ns, self.site_dev, SITE_ADDRESS),
                (self.hub_ns, hub_dev, HUB_ADDRESS),
            ):
                _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")

            def listen() -> socket.socket:
                server = socket.socket()
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind((HUB_ADDRESS, RELAY_PORT))
                server.listen(64)
                return server

            hub = _in_namespace(self.hub_ns, listen)
            self._servers.append(hub)
            _relay(hub, ("127.0.0.1", redis_port), self._stop)
            self.phone_socket = workdir / "phone-network.sock"
            phone = socket.socket(socket.AF_UNIX)
            phone.bind(str(self.phone_socket))
            phone.listen(64)
            self._servers.append(phone)
            _relay(phone, ("127.0.0.1", redis_port), self._stop)
        except BaseException:
            self.close()
            raise

    @property
    def exec_via(self) -> list[str]:
        return ["ip", "netns", "exec", self.site_ns]

    def redis_url(self, db_path: str = "/0") -> str:
        """The fleet's Redis as the site sees it: through the link."""
        return f"redis://{HUB_ADDRESS}:{RELAY_PORT}{db_path}"

    def phone_url(self, db: int = 0) -> str:
        return f"unix://{self.phone_socket}?db={db}"

    def down(self) -> None:
        _ip("-n", self.site_ns, "link", "set", self.site_dev, "down")

    def up(self) -> None:
        _ip("-n", self.site_ns, "link", "set", self.site_dev, "up")

    def close(self) -> None:
        self._stop.set()
        for server in self._servers:
            with contextlib.suppress(OSError):
                server.close()
        for ns in (self.site_ns, self.hub_ns):  # deleting a namespace deletes its veth end
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
