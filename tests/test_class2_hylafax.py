"""HylaFAX's own Class 2.0 driver sends a fax through the emulated modem.

HylaFAX is the reference open-source fax server and has driven Class 2.0 modems in the
field for decades. Its ``faxgetty`` initialises the emulator (``ModemType: Class2.0``),
``faxq`` hands it a job submitted with ``sendfax``, and the far end rejects page 1 once:
HylaFAX must see the RTN (``+FPS:2`` and ``ERROR``, then its ``AT+FPS?`` query), resend the
page after the modem retrains, and finish with ``+FHS:00``. The spool and daemons are set
up with the software fax line's HylaFAX helpers, in a private spool.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faxfleet.kinds import Resolution
from faxfleet.softline import hylafax
from faxfleet.softline.processes import ProcessGroup
from workers.fax.emulator.class2 import Behaviour, Class2Emulator, FarEnd
from workers.render.coding import Coding
from workers.render.tiff import FaxBitmap, encode_bitmap

CLASS20_CONFIG = hylafax.MODEM_CONFIG.split("ModemType:")[0] + "ModemType: Class2.0\n"
JOB_DONE = 7
"""A queue file's ``state`` once the job is done (8: failed)."""


def enable_sending(spool: Path) -> None:
    """Let loopback clients submit jobs without a password (hfaxd reads the hosts file
    only when nobody but its owner can)."""
    hosts = spool / "etc" / "hosts.hfaxd"
    hosts.write_text("127.0.0.1:21::\nlocalhost:21::\n")
    uucp = pwd.getpwnam("uucp")
    os.chown(hosts, uucp.pw_uid, uucp.pw_gid)
    hosts.chmod(0o600)
    if Path("/etc/hylafax/setup.cache").exists():
        shutil.copyfile("/etc/hylafax/setup.cache", spool / "etc" / "setup.cache")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def queue_file(spool: Path, jobid: str) -> dict[str, str] | None:
    """The finished job's queue file as fields (None while faxq still has it)."""
    try:
        text = (spool / "doneq" / f"q{jobid}").read_text(errors="replace")
    except FileNotFoundError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key, value.strip())
    return fields if fields.get("state") in ("7", "8") else None


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the ``uucp`` user (faxgetty, faxq) can reach."""
    path = Path(tempfile.mkdtemp(prefix="class2-hylafax-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def documents(workdir: Path) -> list[Path]:
    row_bytes = 1728 // 8
    paths = []
    for number in (1, 2):
        bits = bytearray(row_bytes * 400)
        for row in range(0, 400, 4 + number):
            bits[row * row_bytes + 20 : row * row_bytes + 60] = b"\xf0" * 40
        path = workdir / f"doc{number}.tif"
        path.write_bytes(
            encode_bitmap(FaxBitmap(1728, 400, bytes(bits)), Resolution.STANDARD, Coding.MH)
        )
        path.chmod(0o644)
        paths.append(path)
    return paths


def test_hylafax_sends_through_the_emulator(workdir: Path) -> None:
    modem = Class2Emulator({"500": FarEnd(Behaviour.REJECT_PAGE, page=1)}, scale=10.0)
    device = Path(modem.start())
    os.chmod(device, 0o666)  # faxgetty opens it as uucp
    spool = workdir / "hylafax"
    group = ProcessGroup()
    try:
        hylafax.build_spool(spool, device, "5550000")
        (spool / "etc" / f"config.{hylafax.device_id(device)}").write_text(
            CLASS20_CONFIG.format(fax_number="5550000")
        )
        enable_sending(spool)
        group.start("faxq", ["/usr/sbin/faxq", "-q", str(spool), "-D"], workdir / "faxq.log")
        group.start("faxgetty", hylafax.faxgetty_argv(spool, device), workdir / "faxgetty.log")
        port = free_port()
        hfaxd = ["/usr/sbin/hfaxd", "-q", str(spool), "-d", "-l", "127.0.0.1", "-i", str(port)]
        group.start("hfaxd", hfaxd, workdir / "hfaxd.log")
        wait_until(lambda: listening(port), 15, "hfaxd did not start")
        wait_until(
            lambda: hylafax.modem_status(spool, device) == hylafax.IDLE_STATUS,
            30,
            "faxgetty did not initialise the modem",
        )
        assert "AT+FCLASS=2.0" in modem.commands

        sendfax = shutil.which("sendfax") or "/usr/bin/sendfax"
        submitted = subprocess.run(
            [sendfax, "-h", f"127.0.0.1:{port}", "-n", "-d", "500", *map(str, documents(workdir))],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        found = re.search(r"request id is (\d+)", submitted.stdout)
        assert found, submitted.stdout
        wait_until(lambda: queue_file(spool, found[1]), 90, "HylaFAX did not finish the job")
        job = queue_file(spool, found[1])
        assert job is not None
        trace = (spool / "log" / f"c{job['commid']}").read_text(errors="replace")
    finally:
        group.stop_all()
        modem.stop()

    assert int(job["state"]) == JOB_DONE, job.get("status")
    assert (job["npages"], job["totpages"]) == ("2", "2")
    (call,) = modem.calls
    assert call.responses == ["RTN", "MCF", "MCF"]
    assert call.hangup == 0x00
    assert call.session is not None and call.session.bit_rate == 12000  # retrained once
    assert "SEND recv RTN" in trace
    assert 'REMOTE CSI "EMULATED FAX"' in trace
