"""Receivers on modem B: independent fax software that answers whatever modem A sends.

Each far end answers calls on its modem, stores what arrives, and reports it as
:class:`ReceivedFax` records with the page counts read from the stored TIFFs and the line
counts the far end itself logged. They share one small contract (start, ready, poll,
received, stop) so the line does not care which program is listening.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import efax, hylafax
from .iaxmodem import INCOMING_GUARD_S
from .processes import ProcessGroup, exit_status
from .tiffpages import tiff_page_count


@dataclass(frozen=True)
class ReceivedFax:
    """One call's worth of received pages, as the far end stored and logged them."""

    receiver: str
    """``"efax"`` or ``"hylafax"``."""
    files: tuple[Path, ...]
    """TIFF files: efax stores one per page, HylaFAX one multi-page file per call."""
    pages: int
    """Pages in ``files`` (counted from the TIFF directories, not taken from a log)."""
    lines: tuple[int | None, ...]
    """Scan lines the far end decoded, per page (None where it did not say)."""
    bad_lines: tuple[int | None, ...]
    """Lines the far end could not decode, per page: efax's "errors", HylaFAX's bad lines."""
    seconds: tuple[int | None, ...]
    """Line time per page where the far end reports it (HylaFAX does, efax does not)."""
    log: Path
    """The far end's own log of the call (efax's output, HylaFAX's session trace)."""


class FarEnd(Protocol):
    name: str

    def start(self) -> None: ...
    def ready(self) -> bool: ...
    def poll(self) -> None: ...
    def received(self) -> list[ReceivedFax]: ...
    def stop(self) -> None: ...


RESPAWN_MIN_S = 1.0


class EfaxReceiver:
    """efax answering modem B, restarted after every call (efax takes one call per run).

    Call N's pages are ``rx/callNNN.001``, ``.002``...; its log is ``efax-callNNN.log``.
    """

    name = "efax"

    def __init__(self, device: Path, workdir: Path, processes: ProcessGroup) -> None:
        self.device = device
        self.dir = workdir / "efax"
        self.processes = processes
        self._lock = threading.Lock()
        self._calls: list[ReceivedFax] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._started_at = 0.0
        self._count = 0
        self._stopped = False
        self._watcher = threading.Thread(target=self._watch, name="efax-receiver", daemon=True)

    def start(self) -> None:
        (self.dir / "rx").mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        self._count += 1
        prefix = self.dir / "rx" / f"call{self._count:03d}"
        self._log = self.dir / f"efax-call{self._count:03d}.log"
        self._proc = self.processes.start(
            "efax-receiver", efax.receive_argv(self.device, prefix), self._log
        )
        self._started_at = time.monotonic()

    def ready(self) -> bool:
        """Initialised, waiting for a call, and past iaxmodem's guard after the last ATH."""
        with self._lock:
            if self._proc is None or self._log is None or exit_status(self._proc) is not None:
                return False
            if time.monotonic() - self._started_at < INCOMING_GUARD_S:
                return False
            return efax.READY_MARK in self._log.read_text(errors="replace")

    def poll(self) -> None:
        """Collect a finished call and start a fresh efax for the next one."""
        with self._lock:
            if self._stopped or self._proc is None or exit_status(self._proc) is None:
                return
            if time.monotonic() - self._started_at < RESPAWN_MIN_S:
                return  # efax failing at once (modem gone?) must not respawn in a tight loop
            self.processes.stop(self._proc)
            assert self._log is not None
            text = self._log.read_text(errors="replace")
            pages = efax.parse_receive_log(text)
            if pages:
                files = tuple(p.path for p in pages)
                self._calls.append(
                    ReceivedFax(
                        receiver=self.name,
                        files=files,
                        pages=sum(tiff_page_count(f) for f in files),
                        lines=tuple(p.lines for p in pages),
                        bad_lines=tuple(p.errors for p in pages),
                        seconds=tuple(None for _ in pages),
                        log=self._log,
                    )
                )
            self._spawn()

    def _watch(self) -> None:
        while not self._stopped:
            self.poll()
            time.sleep(0.2)

    def received(self) -> list[ReceivedFax]:
        self.poll()
        with self._lock:
            return list(self._calls)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is not None:
            self.processes.stop(proc)
        if self._watcher.is_alive():
            self._watcher.join(2)


class HylafaxReceiver:
    """HylaFAX ``faxgetty`` answering a modem into a private spool."""

    name = "hylafax"

    def __init__(
        self, device: Path, workdir: Path, processes: ProcessGroup, fax_number: str
    ) -> None:
        self.device = device
        self.spool = workdir / "hylafax"
        self.processes = processes
        self.fax_number = fax_number
        self._proc: subprocess.Popen[bytes] | None = None
        self._idle_since: float | None = None

    def start(self) -> None:
        hylafax.build_spool(self.spool, self.device, self.fax_number)
        self._proc = self.processes.start(
            "faxgetty",
            hylafax.faxgetty_argv(self.spool, self.device),
            self.spool.parent / "faxgetty.log",
        )

    def ready(self) -> bool:
        """Idle (modem initialised) for longer than iaxmodem's guard after its ATZ."""
        if self._proc is None or exit_status(self._proc) is not None:
            return False
        if hylafax.modem_status(self.spool, self.device) != hylafax.IDLE_STATUS:
            self._idle_since = None
            return False
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= INCOMING_GUARD_S

    def poll(self) -> None:
        return None

    def received(self) -> list[ReceivedFax]:
        calls = []
        for rec in hylafax.receptions(self.spool):
            pages = tiff_page_count(rec.path) if rec.path.exists() else 0
            calls.append(
                ReceivedFax(
                    receiver=self.name,
                    files=(rec.path,) if rec.path.exists() else (),
                    pages=pages,
                    lines=tuple(p.total_lines for p in rec.pages_detail),
                    bad_lines=tuple(p.bad_lines for p in rec.pages_detail),
                    seconds=tuple(p.seconds for p in rec.pages_detail),
                    log=self.spool / "log" / f"c{rec.commid}",
                )
            )
        return calls

    def stop(self) -> None:
        if self._proc is not None:
            self.processes.stop(self._proc)
