"""efax (Ed Casas' Class 1/2 fax program) as an independent far end: receiver or sender.

efax is a complete, separately written T.30 implementation, so a fax it accepts was
correctly sent, and a fax it sends exercises our receiving side against someone else's
reading of the standard. It handles exactly one call per run and then exits.

Verbosity letters used (``-v``): e errors, w warnings, i progress, n negotiation,
c AT commands, r reception error details, t transmission details, f image files. HDLC hex
dumps (``h``) are left out: they dwarf everything else.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VERBOSITY = "ewincrtf"

READY_MARK = "waiting for activity"
"""What efax logs once its modem is initialised and it waits for a call."""

_RECEIVED = re.compile(r"received (\d+) lines, (\d+) errors")
_WROTE = re.compile(r"wrote (\S+) as (\d+)x(\d+) pixel")
_REMOVED = re.compile(r"removed (\S+)")
_SENT = re.compile(r"sent (\d+)\+(\d+) lines, (\d+)\+(\d+) bytes, (\d+) s\s+(\d+) bps")
_RETURNING = re.compile(r"done, returning (\d+)")


def _exe() -> str:
    exe = shutil.which("efax")
    if exe is None:
        raise FileNotFoundError("efax is not installed (apt-get install efax)")
    return exe


def receive_argv(device: Path, prefix: Path) -> list[str]:
    """Answer the next call on ``device`` and store page N as ``<prefix>.00N``.

    ``-o1`` forces Class 1 (iaxmodem has nothing else); ``-jS0=1`` makes the modem answer
    on the first ring and ``-w`` has efax wait for the modem's CONNECT instead of
    answering itself. ``-r`` is a strftime pattern, so ``%`` in the prefix is escaped.
    """
    pattern = str(prefix).replace("%", "%%")
    return [_exe(), "-d", str(device), "-o1", "-jS0=1", "-w", "-v", VERBOSITY, "-r", pattern]


def send_argv(device: Path, number: str, files: Sequence[Path]) -> list[str]:
    """Dial ``number`` on ``device`` and send ``files`` (TIFF G3/G4, PBM or text).

    ``-h ""`` turns off efax's page header, so what arrives is exactly the page given.
    """
    if not files:
        raise ValueError("efax needs at least one file to send")
    return [
        _exe(),
        "-d",
        str(device),
        "-o1",
        "-h",
        "",
        "-v",
        VERBOSITY,
        "-t",
        number,
        *map(str, files),
    ]


@dataclass(frozen=True)
class EfaxPage:
    """One page as efax's receiver logged it."""

    path: Path
    width: int
    rows: int
    lines: int | None
    errors: int | None


def parse_receive_log(text: str) -> list[EfaxPage]:
    """The pages efax kept, in order, with the line and error counts it logged for each.

    efax logs "received N lines, M errors" when a page's data ends and "wrote F as WxH"
    once the page is stored; it writes (then removes) an empty file after the last page.
    """
    pages: list[EfaxPage] = []
    counts: tuple[int, int] | None = None
    removed: set[str] = set()
    for line in text.splitlines():
        if m := _RECEIVED.search(line):
            counts = (int(m[1]), int(m[2]))
        elif m := _WROTE.search(line):
            lines, errors = counts if counts else (None, None)
            pages.append(EfaxPage(Path(m[1]), int(m[2]), int(m[3]), lines, errors))
            counts = None
        elif m := _REMOVED.search(line):
            removed.add(m[1])
    return [p for p in pages if str(p.path) not in removed and p.rows > 0]


@dataclass(frozen=True)
class EfaxSendReport:
    """What efax's sender logged: one entry per page data burst, and its exit status."""

    pages_sent: int
    seconds_per_page: tuple[int, ...]
    bits_per_second: tuple[int, ...]
    returned: int | None

    @property
    def ok(self) -> bool:
        return self.returned == 0


def parse_send_log(text: str) -> EfaxSendReport:
    seconds: list[int] = []
    rates: list[int] = []
    returned = None
    for line in text.splitlines():
        if m := _SENT.search(line):
            seconds.append(int(m[5]))
            rates.append(int(m[6]))
        elif m := _RETURNING.search(line):
            returned = int(m[1])
    return EfaxSendReport(len(seconds), tuple(seconds), tuple(rates), returned)
