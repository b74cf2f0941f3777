"""A private network namespace with only loopback, for the two modems' IAX2 traffic.

iaxmodem binds 0.0.0.0 on its UDP port. Inside a namespace of its own the pair can use
fixed ports without colliding with another line, another engineer's experiment or a PBX on
the host, and nothing outside can ring them. The ptys they create are ordinary files:
network namespaces do not isolate the filesystem, so host processes open them as usual.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


class NamespaceUnavailable(RuntimeError):
    """The namespace could not be created (not root, no ``ip``, or the kernel refuses)."""


@dataclass
class Namespace:
    name: str

    @classmethod
    def create(cls, name: str) -> Namespace:
        ip = shutil.which("ip")
        if ip is None:
            raise NamespaceUnavailable("the ip command (iproute2) is not installed")
        added = _run([ip, "netns", "add", name])
        if added.returncode != 0:
            raise NamespaceUnavailable(f"ip netns add {name}: {added.stderr.strip()}")
        namespace = cls(name)
        up = _run([ip, "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        if up.returncode != 0:
            namespace.delete()
            raise NamespaceUnavailable(f"loopback up in {name}: {up.stderr.strip()}")
        return namespace

    def exec_prefix(self) -> list[str]:
        """The argv prefix that runs a program inside the namespace (``ip netns exec``
        execs the program, so the pid we track is the program's own)."""
        return ["ip", "netns", "exec", self.name]

    def delete(self) -> None:
        _run(["ip", "netns", "delete", self.name])


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
