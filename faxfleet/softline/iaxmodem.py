"""One Debian ``iaxmodem`` software Class 1 fax modem, wired straight to its peer.

Two instances call each other without a PBX: neither registers (``refresh 0``) and each
one's ``server`` is the other's UDP port, so ``ATDT<anything>`` on one rings the other.
iaxmodem only reads configuration from ``/etc/iaxmodem/<name>``; we pass a name that climbs
out of that directory to our private file, so nothing is ever written under /etc. Run as a
single modem (name on the command line) it logs to stdout, which we capture.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import termios
import time
import tty
from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path("/etc/iaxmodem")

INCOMING_GUARD_S = 5.5
"""After ATH or ATZ, iaxmodem rejects incoming calls for about five seconds: a receiver
that just (re)initialised its modem is only reachable once this has passed."""


class ModemNotReady(RuntimeError):
    """The modem's pty never answered ``AT`` with ``OK``."""


@dataclass(frozen=True)
class ModemConfig:
    """What one iaxmodem needs to know: its pty, its UDP port and where its peer listens."""

    name: str
    device: Path
    port: int
    peer_port: int
    number: str
    peer_host: str = "127.0.0.1"

    def render(self) -> str:
        return "\n".join(
            [
                f"; faxfleet software fax line, modem {self.name}",
                f"device {self.device}",
                "owner root:root",
                "mode 660",
                f"port {self.port}",
                "refresh 0",
                f"server {self.peer_host}:{self.peer_port}",
                f"peername {self.name}",
                "secret faxfleet",
                f"cidname {self.name}",
                f"cidnumber {self.number}",
                "codec slinear",
                "",
            ]
        )


def config_argument(config_file: Path) -> str:
    """The name to give iaxmodem so that ``/etc/iaxmodem/<name>`` is ``config_file``."""
    config_file = Path(config_file).resolve()
    climb = "/".join([".."] * len(CONFIG_DIR.parts))
    return f"{climb}{config_file}"


def iaxmodem_argv(config_file: Path) -> list[str]:
    exe = shutil.which("iaxmodem")
    if exe is None:
        raise FileNotFoundError("iaxmodem is not installed (apt-get install iaxmodem)")
    return [exe, config_argument(config_file)]


def probe(device: Path, timeout: float) -> None:
    """Wait until the pty at ``device`` exists and answers ``AT`` with ``OK``.

    Only ``AT`` is sent (never ATZ or ATH), so probing does not start iaxmodem's
    refuse-incoming-calls guard.
    """
    deadline = time.monotonic() + timeout
    last_error = "pty never appeared"
    while time.monotonic() < deadline:
        if not os.path.exists(device):
            time.sleep(0.1)
            continue
        try:
            if _at_ok(device, min(2.0, max(0.1, deadline - time.monotonic()))):
                return
            last_error = "no OK to AT"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise ModemNotReady(f"{device}: {last_error}")


def _at_ok(device: Path, wait: float) -> bool:
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIOFLUSH)
        os.write(fd, b"AT\r")
        reply = b""
        end = time.monotonic() + wait
        while b"OK" not in reply and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    reply += os.read(fd, 256)
        return b"OK" in reply
    finally:
        os.close(fd)
