"""The same Class 1 conversation against the emulated pair and against two real iaxmodems.

Two Debian iaxmodems call each other straight over IAX2 on loopback, inside a private
network namespace (iaxmodem binds 0.0.0.0), with no PBX: neither registers and each one's
server is the other's UDP port. Whatever passes here on both is behaviour the emulator
shares with a real software modem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort, AtTimeout
from workers.fax.modem.class1 import CallStatus, Class1Modem, Modulation

DIS = bytes.fromhex("ff13800073f8")
CSI = bytes.fromhex("ff03400000003130")
DCS = bytes.fromhex("ff13830073f8")


def _config(tmp: Path, name: str, port: int, peer: int, number: str) -> Path:
    path = tmp / f"modem{name}"
    path.write_text(
        "\n".join(
            [
                f"device {tmp}/tty{name}",
                "owner root:root",
                "mode 660",
                f"port {port}",
                "refresh 0",
                f"server 127.0.0.1:{peer}",
                f"peername {name}",
                "secret check",
                f"cidname {name}",
                f"cidnumber {number}",
                "codec slinear",
                "",
            ]
        )
    )
    return path


def _answers(url: str) -> bool:
    try:
        with AtPort.open(url, name="probe") as port:
            return port.command("AT", timeout=1).ok
    except (OSError, AtTimeout):
        return False


@pytest.fixture
def iaxmodems() -> Iterator[tuple[str, str, str]]:
    if shutil.which("iaxmodem") is None or os.geteuid() != 0:
        pytest.fail("iaxmodem (Debian package) and root for a network namespace are required")
    # iaxmodem silently creates no pty when the device path is long: keep it short.
    tmp_path = Path(tempfile.mkdtemp(prefix="fmiax", dir="/tmp"))
    ns = f"fm-iax-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        climb = "/".join([".."] * 2)  # out of /etc/iaxmodem
        for name, port, peer, number in (("A", 4571, 4572, "101"), ("B", 4572, 4571, "102")):
            conf = _config(tmp_path, name, port, peer, number)
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, "iaxmodem", f"{climb}{conf}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        urls = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))
        deadline = time.monotonic() + 20
        while not all(os.path.exists(u) and _answers(u) for u in urls):
            assert time.monotonic() < deadline, "iaxmodem did not come up"
            time.sleep(0.3)
        yield urls[0], urls[1], "102"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        subprocess.run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def emulated() -> Iterator[tuple[str, str, str]]:
    with EmulatorPair(("101", "102"), time_scale=1.0) as pair:
        yield pair.urls[0], pair.urls[1], "102"


@pytest.fixture(params=["emulator", pytest.param("iaxmodem", marks=pytest.mark.realline)])
def line(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    return request.getfixturevalue("emulated" if request.param == "emulator" else "iaxmodems")


def test_probe_call_and_frames_both_ways(line: tuple[str, str, str]) -> None:
    url_a, url_b, number = line
    a = Class1Modem(AtPort.open(url_a, name="line-a"))
    b = Class1Modem(AtPort.open(url_b, name="line-b"))
    try:
        for modem in (a, b):
            info = modem.probe()
            assert info.class1 and "1.0" in info.classes
            assert Modulation.V17_14400 in info.transmit and Modulation.V29_9600 in info.receive
        got: dict[str, object] = {}

        def answerer() -> None:
            assert b.port.wait_for(["RING"], 30) == "RING"
            got["answer"] = b.answer(30)
            got["send"] = b.send_hdlc([CSI, DIS])
            got["dcs"] = b.receive_hdlc(10)
            got["tcf"] = b.receive_data(Modulation.V29_9600, 10)

        side = threading.Thread(target=answerer)
        side.start()
        assert a.dial(number, 60) is CallStatus.OK
        csi, dis = a.receive_hdlc(10), a.receive_hdlc(10)
        assert (csi.status, csi.frame) == ("ok", CSI)
        assert (dis.status, dis.frame) == ("ok", DIS)
        assert a.fcs_included is True  # both pass the FCS on after the frame
        assert a.send_hdlc([DCS]) is CallStatus.OK
        assert a.send_silence(75) is CallStatus.OK
        assert a.send_data(Modulation.V29_9600, bytes(1800)) is CallStatus.OK
        side.join(30)
        assert got["answer"] is CallStatus.OK and got["send"] is CallStatus.OK
        assert got["dcs"].frame == DCS  # type: ignore[attr-defined]
        tcf = got["tcf"]
        assert tcf.status == "ok"  # type: ignore[attr-defined]
        assert tcf.data[:1800] == bytes(1800)  # type: ignore[attr-defined]
        assert a.hangup() is CallStatus.OK
        time.sleep(0.5)
        assert b.receive_hdlc(2).status == "error"  # the call is gone: ERROR on both
    finally:
        a.port.close()
        b.port.close()
