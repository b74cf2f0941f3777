"""A real software fax line on one machine: two iaxmodems calling each other directly.

Modem A is ours: faxfleet's driver (or any fax program) opens :attr:`SoftLine.modem_a`.
Modem B is the far end: an independent fax program (efax or HylaFAX) answers it, or the
line leaves it idle so a test can send *from* B to whatever answers on A.

    with SoftLine(far_end="efax") as line:
        line.wait_ready()
        report = line.send_efax([page_tif])          # efax on A dials B
        fax = line.wait_received(1)[0]               # what efax on B stored

Everything lives in a private temporary directory and (as root) a private network
namespace; :meth:`SoftLine.close` stops every process the line started, deletes the
namespace and removes the directory, also after a failure.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from . import efax
from .farend import EfaxReceiver, FarEnd, HylafaxReceiver, ReceivedFax
from .iaxmodem import ModemConfig, iaxmodem_argv, probe
from .namespace import Namespace, NamespaceUnavailable
from .processes import ProcessGroup, exit_status

FarEndKind = Literal["efax", "hylafax"]

NAMESPACE_PORTS = (4570, 4571)
"""Inside a private namespace nothing else listens, so the modems use fixed ports."""


class LineError(RuntimeError):
    """The line could not be brought up, or a part of it died."""


class SoftLine:
    """Two iaxmodem modems wired back to back, with an optional far-end receiver on B."""

    number_a = "5551001"
    number_b = "5551002"
    """iaxmodem ignores the digits dialled (each modem has exactly one peer), but fax
    software wants a number; these are the ones to dial."""

    def __init__(
        self,
        far_end: FarEndKind | None = "efax",
        *,
        base_dir: Path | None = None,
        use_namespace: bool = True,
        keep_files: bool = False,
    ) -> None:
        self.far_end_kind = far_end
        self.token = secrets.token_hex(3)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"softline-{self.token}-", dir=base_dir))
        # faxgetty drops to the uucp user: it must be able to walk into our directory.
        self.workdir.chmod(0o755)
        # Unique device names: HylaFAX and efax lock modems by base name in /var/lock.
        self.modem_a = self.workdir / f"ttySL{self.token}a"
        self.modem_b = self.workdir / f"ttySL{self.token}b"
        self.use_namespace = use_namespace
        self.keep_files = keep_files
        self.namespace: Namespace | None = None
        self.processes = ProcessGroup()
        self.far_end: FarEnd | None = None
        self._modems: list[subprocess.Popen[bytes]] = []
        self._receivers: list[FarEnd] = []
        self.ports: tuple[int, int] = (0, 0)
        """UDP ports of modems A and B (inside the namespace, if there is one)."""
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> SoftLine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> SoftLine:
        """Bring up both modems and the far end; returns once both ptys answer AT.

        On failure everything started so far is stopped and removed before raising.
        """
        try:
            return self._start(timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, timeout: float) -> SoftLine:
        prefix = self._network()
        self.ports = port_a, port_b = self._ports()
        configs = (
            ModemConfig("modemA", self.modem_a, port_a, port_b, self.number_a),
            ModemConfig("modemB", self.modem_b, port_b, port_a, self.number_b),
        )
        for config in configs:
            path = self.workdir / f"iaxmodem-{config.name}.conf"
            path.write_text(config.render())
            self._modems.append(
                self.processes.start(
                    f"iaxmodem {config.name}",
                    [*prefix, *iaxmodem_argv(path)],
                    self.workdir / f"iaxmodem-{config.name}.log",
                )
            )
        for config in configs:
            try:
                probe(config.device, timeout)
            except Exception as exc:
                raise LineError(f"{config.name} did not come up: {exc}; {self._tail()}") from exc
        if self.far_end_kind is not None:
            self.far_end = self.add_receiver(self.far_end_kind, "b")
        return self

    def add_receiver(self, kind: FarEndKind, modem: Literal["a", "b"]) -> FarEnd:
        """Start ``kind`` answering ``modem`` (B is the far end; A only for testing the rig
        itself, when nothing of ours answers there)."""
        device = self.modem_a if modem == "a" else self.modem_b
        number = self.number_a if modem == "a" else self.number_b
        workdir = self.workdir / f"modem-{modem}"
        workdir.mkdir(exist_ok=True)
        receiver: FarEnd
        if kind == "efax":
            receiver = EfaxReceiver(device, workdir, self.processes)
        elif kind == "hylafax":
            receiver = HylafaxReceiver(device, workdir, self.processes, f"+1.555.{number}")
        else:
            raise ValueError(f"unknown far end {kind!r}")
        self._receivers.append(receiver)
        receiver.start()
        return receiver

    def _network(self) -> list[str]:
        """The argv prefix for the modems: inside a fresh namespace, or on the host."""
        if not self.use_namespace:
            return []
        try:
            self.namespace = Namespace.create(f"softline-{self.token}")
        except NamespaceUnavailable:
            self.namespace = None
            return []
        return self.namespace.exec_prefix()

    def _ports(self) -> tuple[int, int]:
        if self.namespace is not None:
            return NAMESPACE_PORTS
        return _free_udp_port(), _free_udp_port()

    def close(self) -> None:
        """Stop everything this line started; remove its namespace, locks and files."""
        if self._closed:
            return
        self._closed = True
        try:
            for receiver in self._receivers:
                receiver.stop()
        finally:
            self.processes.stop_all()
            if self.namespace is not None:
                self.namespace.delete()
            _remove_locks(self.modem_a, self.modem_b)
            if not self.keep_files:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- state -------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`LineError` if a modem has died."""
        for proc in self._modems:
            status = exit_status(proc)
            if status is not None:
                raise LineError(f"iaxmodem exited with status {status}; {self._tail()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every receiver answers calls (initialised, past iaxmodem's guard)."""
        deadline = time.monotonic() + timeout
        for receiver in self._receivers:
            while not receiver.ready():
                self.check()
                if time.monotonic() > deadline:
                    raise LineError(f"{receiver.name} never became ready to answer")
                time.sleep(0.2)

    def received(self) -> list[ReceivedFax]:
        """Every fax the far end has finished receiving so far, oldest first."""
        return [] if self.far_end is None else self.far_end.received()

    def wait_received(self, count: int = 1, timeout: float = 300.0) -> list[ReceivedFax]:
        """Block until the far end has finished receiving ``count`` faxes."""
        deadline = time.monotonic() + timeout
        while len(found := self.received()) < count:
            self.check()
            if time.monotonic() > deadline:
                raise LineError(f"{len(found)} of {count} faxes received within {timeout} s")
            time.sleep(0.5)
        return found

    # -- sending with independent software -----------------------------------------------

    def send_efax(
        self,
        files: Sequence[Path],
        *,
        from_modem: Literal["a", "b"] = "a",
        number: str | None = None,
        timeout: float = 600.0,
    ) -> efax.EfaxSendReport:
        """Send ``files`` with efax from one modem to the other; blocks until efax exits.

        From A (default) it exercises the far-end receiver on B; from B it calls whatever
        answers on A (faxfleet's own driver). Use ``from_modem="b"`` only with
        ``far_end=None``, or efax and the receiver would fight over modem B.
        """
        device = self.modem_a if from_modem == "a" else self.modem_b
        if number is None:
            number = self.number_b if from_modem == "a" else self.number_a
        stamp = time.strftime("%H%M%S")
        log = self.workdir / f"efax-send-{from_modem}-{stamp}-{secrets.token_hex(2)}.log"
        proc = self.processes.start("efax-sender", efax.send_argv(device, number, files), log)
        deadline = time.monotonic() + timeout
        while exit_status(proc) is None:
            if time.monotonic() > deadline:
                self.processes.stop(proc)
                raise LineError(f"efax did not finish sending within {timeout} s; see {log}")
            time.sleep(0.2)
        self.processes.stop(proc)
        return efax.parse_send_log(log.read_text(errors="replace"))

    def _tail(self) -> str:
        """The last lines of each modem's log, for error messages."""
        parts = []
        for log in sorted(self.workdir.glob("iaxmodem-*.log")):
            lines = log.read_text(errors="replace").splitlines()[-5:]
            parts.append(f"{log.name}: " + " | ".join(lines))
        return "; ".join(parts)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _remove_locks(*devices: Path) -> None:
    """UUCP lock files efax or faxgetty may leave for our (uniquely named) devices."""
    for device in devices:
        for lock_dir in (Path("/var/lock"), Path("/run/lock")):
            (lock_dir / f"LCK..{device.name}").unlink(missing_ok=True)
