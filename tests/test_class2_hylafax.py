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
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxfleet.kinds import Resolution
from faxfleet.softline import hylafax
from faxfleet.softline.farend import free_tcp_port, wait_for_tcp
from faxfleet.softline.processes import ProcessGroup
from workers.fax.emulator.class2 import Behaviour, Class2Emulator, FarEnd
from workers.render.coding import Coding
from workers.render.tiff import FaxBitmap, encode_bitmap

CLASS20_CONFIG = hylafax.MODEM_CONFIG.split("ModemType:")[0] + "ModemType: Class2.0\n"


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
        hylafax.enable_sending(spool)
        group.start("faxq", hylafax.faxq_argv(spool), workdir / "faxq.log")
        group.start("faxgetty", hylafax.faxgetty_argv(spool, device), workdir / "faxgetty.log")
        port = free_tcp_port()
        group.start("hfaxd", hylafax.hfaxd_argv(spool, port), workdir / "hfaxd.log")
        wait_for_tcp(port, 15.0)
        deadline = time.monotonic() + 30
        while hylafax.modem_status(spool, device) != hylafax.IDLE_STATUS:
            assert time.monotonic() < deadline, "faxgetty did not initialise the modem"
            time.sleep(0.2)
        assert "AT+FCLASS=2.0" in modem.commands

        submitted = subprocess.run(
            hylafax.sendfax_argv(port, "500", documents(workdir)),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        jobid = hylafax.request_id(submitted.stdout)
        deadline = time.monotonic() + 90
        while (job := hylafax.finished_job(spool, jobid)) is None:
            assert time.monotonic() < deadline, "HylaFAX did not finish the job"
            time.sleep(0.3)
        trace = (spool / "log" / f"c{job.commid}").read_text(errors="replace")
    finally:
        group.stop_all()
        modem.stop()

    assert job.state == hylafax.JOB_DONE, job.status
    assert (job.pages_sent, job.total_pages) == (2, 2)
    (call,) = modem.calls
    assert call.responses == ["RTN", "MCF", "MCF"]
    assert call.hangup == 0x00
    assert call.session is not None and call.session.bit_rate == 12000  # retrained once
    assert "SEND recv RTN" in trace
    assert 'REMOTE CSI "EMULATED FAX"' in trace
