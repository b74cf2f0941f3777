"""``python -m workers.fax.emulator``: the pair as a separate process, as the demo and the
benchmarks run it, reached through a pty and through TCP."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import CallStatus, Class1Modem

ROOT = Path(__file__).resolve().parents[1]


def test_command_prints_urls_and_serves_a_call() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.fax.emulator",
            "--numbers",
            "201",
            "202",
            "--time-scale",
            "100",
            "--tcp",
            "--faults",
            "203=busy",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().split() for _ in range(3)]
        assert lines[2] == ["ready"]
        (name_a, num_a, pty_a, tcp_a), (name_b, num_b, pty_b, tcp_b) = lines[:2]
        assert (name_a, num_a, name_b, num_b) == ("A", "201", "B", "202")
        assert pty_a.startswith("/dev/pts/") and pty_b.startswith("/dev/pts/")
        assert tcp_a.startswith("socket://127.0.0.1:") and tcp_b.startswith("socket://127.0.0.1:")
        a = Class1Modem(AtPort.open(pty_a, name="cli-a"))
        b = Class1Modem(AtPort.open(tcp_b, name="cli-b"))
        assert a.dial("203", 10) is CallStatus.BUSY

        def answer() -> None:
            assert b.port.wait_for(["RING"], 5) == "RING"
            assert b.answer(10) is CallStatus.OK
            assert b.send_hdlc([bytes.fromhex("ff13800073f8")]) is CallStatus.OK

        side = threading.Thread(target=answer)
        side.start()
        assert a.dial("202", 10) is CallStatus.OK
        assert a.receive_hdlc(5).frame == bytes.fromhex("ff13800073f8")
        side.join(10)
        a.port.close()
        b.port.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_command_refuses_bad_faults() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workers.fax.emulator", "--faults", "1=explode"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "unknown fault" in done.stderr
