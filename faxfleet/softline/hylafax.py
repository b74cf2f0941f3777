"""HylaFAX as an independent far end: a private spool and ``faxgetty`` on one modem.

HylaFAX is the reference open-source fax server, with its own Class 1 T.30 engine. A
private spool keeps it away from any system installation: ``faxgetty -q SPOOL DEVICE``
reads ``SPOOL/etc/config.<devid>``, stores received faxes in ``SPOOL/recvq/``, appends one
line per call to ``SPOOL/log/xferfaxlog`` and writes a full AT/HDLC trace of every call to
``SPOOL/log/c<commid>``. faxgetty changes to the ``uucp`` user, so the spool is theirs.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

SYSTEM_SPOOL_BIN = Path("/var/spool/hylafax/bin")
SPOOL_DIRS = (
    "archive",
    "bin",
    "client",
    "config",
    "dev",
    "docq",
    "doneq",
    "etc",
    "info",
    "log",
    "pollq",
    "recvq",
    "sendq",
    "status",
    "tmp",
)
QUIET_SCRIPTS = ("faxrcvd", "notify", "pollrcvd")
"""Scripts HylaFAX runs after a call to mail someone; the rig has nobody to tell."""

IDLE_STATUS = "Running and idle"

MODEM_CONFIG = """\
CountryCode: 1
AreaCode: 555
FAXNumber: {fax_number}
LongDistancePrefix: 1
InternationalPrefix: 011
ServerTracing: 0xFFF
SessionTracing: 0xFFF
RecvFileMode: 0644
LogFileMode: 0644
DeviceMode: 0666
RingsBeforeAnswer: 1
SpeakerVolume: off
LocalIdentifier: "faxfleet far end"
MaxRecvPages: 100
ModemType: Class1
Class1AdaptRecvCmd: AT+FAR=1
Class1TMConnectDelay: 400
"""
"""Class1TMConnectDelay counters iaxmodem's too-quick CONNECT before page data;
AT+FAR=1 lets the modem pick V.17/V.29/V.27ter itself, as iaxmodem expects."""

SCHEDULER_CONFIG = """\
LogFacility: daemon
CountryCode: 1
AreaCode: 555
LongDistancePrefix: 1
InternationalPrefix: 011
ServerTracing: 1
"""


def device_id(device: Path) -> str:
    """HylaFAX's name for a modem: the device path without /dev/, slashes as underscores."""
    name = str(device)
    if name.startswith("/dev/"):
        name = name[len("/dev/") :]
    return name.replace("/", "_")


def build_spool(spool: Path, device: Path, fax_number: str) -> None:
    """Create the minimal tree faxgetty needs to answer ``device`` into ``spool``."""
    for name in SPOOL_DIRS:
        (spool / name).mkdir(parents=True, exist_ok=True)
    if SYSTEM_SPOOL_BIN.is_dir():
        shutil.copytree(SYSTEM_SPOOL_BIN, spool / "bin", symlinks=True, dirs_exist_ok=True)
    for script in QUIET_SCRIPTS:
        path = spool / "bin" / script
        path.unlink(missing_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    (spool / "etc" / "config").write_text(SCHEDULER_CONFIG)
    (spool / "etc" / f"config.{device_id(device)}").write_text(
        MODEM_CONFIG.format(fax_number=fax_number)
    )
    fifo = spool / "FIFO"
    if not fifo.exists():
        os.mkfifo(fifo, 0o600)
    fax_user = pwd.getpwnam("uucp")
    for root, dirs, files in os.walk(spool):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), fax_user.pw_uid, fax_user.pw_gid)
    os.chown(spool, fax_user.pw_uid, fax_user.pw_gid)
    # faxgetty runs as uucp: every directory above the spool must let it through.
    for parent in spool.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise PermissionError(
                f"{parent} is not searchable by others: faxgetty (uucp) could not reach its spool"
            )


def faxgetty_argv(spool: Path, device: Path) -> list[str]:
    exe = shutil.which("faxgetty") or "/usr/sbin/faxgetty"
    if not os.path.exists(exe):
        raise FileNotFoundError("faxgetty is not installed (apt-get install hylafax-server)")
    return [exe, "-q", str(spool), str(device)]


def modem_status(spool: Path, device: Path) -> str:
    try:
        return (spool / "status" / device_id(device)).read_text().strip()
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class HylafaxPage:
    """One received page as HylaFAX's session log reports it."""

    total_lines: int
    bad_lines: int
    consecutive_bad_lines: int
    seconds: int | None
    bits_per_second: int | None


@dataclass(frozen=True)
class HylafaxReception:
    """One RECV record of xferfaxlog, with the per-page details from its session log."""

    commid: str
    path: Path
    pages: int
    seconds: int
    pages_detail: tuple[HylafaxPage, ...]
    reason: str


_LINES = re.compile(r"RECV: (\d+) total lines, (\d+) bad lines, (\d+) consecutive bad lines")
_PAGE = re.compile(r"RECV FAX \(\w+\): from .*, page (\d+) in (\d+):(\d+):(\d+),.* (\d+) bit/s")


def _duration(text: str) -> int:
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def parse_session_log(text: str) -> list[HylafaxPage]:
    pages: list[HylafaxPage] = []
    counts: tuple[int, int, int] | None = None
    for line in text.splitlines():
        if m := _LINES.search(line):
            counts = (int(m[1]), int(m[2]), int(m[3]))
        elif (m := _PAGE.search(line)) and counts is not None:
            seconds = int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4])
            pages.append(HylafaxPage(*counts, seconds, int(m[5])))
            counts = None
    return pages


def receptions(spool: Path) -> list[HylafaxReception]:
    """Every fax faxgetty has finished receiving into ``spool``, oldest first."""
    try:
        text = (spool / "log" / "xferfaxlog").read_text(errors="replace")
    except FileNotFoundError:
        return []
    found: list[HylafaxReception] = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 14 or fields[1] != "RECV":
            continue
        commid = fields[2]
        try:
            session = (spool / "log" / f"c{commid}").read_text(errors="replace")
        except FileNotFoundError:
            session = ""
        found.append(
            HylafaxReception(
                commid=commid,
                path=spool / fields[4],
                pages=int(fields[10]),
                seconds=_duration(fields[11]),
                pages_detail=tuple(parse_session_log(session)),
                reason=fields[13].strip('"'),
            )
        )
    return found
