"""Our T.30 engine on a real software fax line: iaxmodem (spandsp's modems) on both ends,
with fax software we did not write on the far end (efax, HylaFAX).

Each call costs half a minute to a minute and a half of real line time, so the matrix of
docs/t30.md ("Real-line test matrix") is covered by a few calls that each prove several
cells at once: both resolutions, MH/MR/MMR, ECM on and off, one to three pages, in both
directions. Every call checks what the far end's own decoder logged (0 bad lines per page)
and compares every received page, pixel for pixel, with what was sent.
"""

from __future__ import annotations

import io
import os
import pwd
import random
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from faxfleet.kinds import Resolution
from faxfleet.softline import SoftLine, hylafax, iaxmodem
from faxfleet.softline import efax as efax_tool
from faxfleet.softline.processes import exit_status
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import Class1Modem, DataResult, Modulation
from workers.fax.session import SessionResult, receive_fax, send_fax
from workers.fax.t30 import pagedata, t4
from workers.fax.t30.engine import Config
from workers.fax.t30.negotiate import Wishes
from workers.fax.t30.t4codes import EOL
from workers.render import render_documents
from workers.render.coding import Coding
from workers.render.tiff import read_pages

OUR_ID = "+1 555 0100"
EFAX_ID = "+1 555 0177"
HYLAFAX_ID = "faxfleet far end"
"""The LocalIdentifier the software line gives HylaFAX (its TSI and CSI)."""

TEXT = (
    "faxfleet T.30 engine on a real line\n\n"
    + "The quick brown fox jumps over the lazy dog. 0123456789 ()[]{}<>!?\n" * 12
).encode()


# --- pages: text, a table, a scanned letter --------------------------------------------------


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _table() -> bytes:
    """A ruled table: long horizontal runs, thin vertical rules crossing every row."""
    image = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(image)
    cols, rows, x0, y0, width, height = 5, 12, 100, 200, 300, 70
    draw.text((x0, 100), "Invoice 2026-1142: items shipped", fill=0)
    for r in range(rows + 1):
        draw.line([(x0, y0 + r * height), (x0 + cols * width, y0 + r * height)], fill=0, width=3)
    for c in range(cols + 1):
        draw.line([(x0 + c * width, y0), (x0 + c * width, y0 + rows * height)], fill=0, width=3)
    for r in range(rows):
        for c in range(cols):
            cell = f"R{r + 1}C{c + 1} {(r * 7 + c * 13) % 997:>4}"
            draw.text((x0 + c * width + 20, y0 + r * height + 25), cell, fill=0)
    return _png(image)


def _scan() -> bytes:
    """A scanned letter: grey paper, dust specks, a signature and a halftoned photograph."""
    rng = random.Random(7)
    image = Image.new("L", (1700, 2200), 235)
    draw = ImageDraw.Draw(image)
    for y in range(300, 900, 40):
        draw.text((150, y), "Scanned letter, received and signed. Lorem ipsum dolor.", fill=30)
    draw.line([(200, 1650), (420, 1600), (520, 1700), (700, 1620)], fill=0, width=6)
    image.paste(Image.radial_gradient("L").resize((360, 360)), (1200, 1700))
    pixels = image.load()
    assert pixels is not None
    for _ in range(600):
        pixels[rng.randrange(1700), rng.randrange(2200)] = 0
    return _png(image)


def _pages(resolution: Resolution, coding: Coding, count: int = 3) -> list[bytes]:
    """``count`` (1 to 3) rendered pages: text, then the table, then the scanned letter."""
    return render_documents([TEXT, _table(), _scan()][:count], resolution, coding=coding)


# --- comparing images -------------------------------------------------------------------------


def _rows(page: bytes) -> list[bytes]:
    """Rows (black = 1) of a single-page TIFF of ours."""
    bitmap = next(read_pages(page)).bitmap
    size = bitmap.row_bytes
    return [bitmap.bits[y * size : (y + 1) * size] for y in range(bitmap.height)]


def _rows_of_file(path: Path, page: int = 0) -> list[bytes]:
    """Rows (black = 1) of page ``page`` of any bilevel TIFF, as Pillow (libtiff) decodes it."""
    with Image.open(path) as image:
        image.seek(page)
        bilevel = image.convert("L").point(lambda v: 255 if v < 128 else 0).convert("1")
    stride = (bilevel.width + 7) // 8
    data = bilevel.tobytes()
    return [data[y * stride : (y + 1) * stride] for y in range(bilevel.height)]


def _assert_same_ink(sent: list[bytes], received: list[bytes], *, trailer: bool = False) -> None:
    """The inked rows arrive unchanged; a far end may add or chop blank margin rows.

    ``trailer``: rows after the end of the sent page may carry ink of the sender's own
    (efax sends a few such rows after every page it reads from a TIFF file)."""
    inked = [y for y, row in enumerate(sent) if any(row)]
    got = [y for y, row in enumerate(received) if any(row)]
    assert len(inked) > 100
    shift = got[0] - inked[0]
    if trailer:
        got = [y for y in got if y - shift < len(sent)]
    assert [y + shift for y in inked] == got
    assert all(sent[y] == received[y + shift] for y in inked)


def _assert_pages_equal(
    sent: Sequence[bytes], received: Sequence[list[bytes]], *, trailer: bool = False
) -> None:
    assert len(received) == len(sent)
    for number, (page, rows) in enumerate(zip(sent, received, strict=True), 1):
        try:
            _assert_same_ink(_rows(page), rows, trailer=trailer)
        except AssertionError as error:
            raise AssertionError(f"page {number} differs from what was sent") from error


# --- our side of the line -----------------------------------------------------------------------


class _RecordingModem(Class1Modem):
    """Modem A, keeping a copy of every stretch of data it received (AT+FRM), so that a
    test can run our own decoder over exactly the bytes that crossed the line."""

    def __init__(self, port: AtPort) -> None:
        super().__init__(port)
        self.data_received: list[bytes] = []

    def receive_data(self, mod: Modulation, timeout: float) -> DataResult:
        result = super().receive_data(mod, timeout)
        self.data_received.append(result.data)
        return result


def _modem(line: SoftLine) -> _RecordingModem:
    modem = _RecordingModem(AtPort.open(str(line.modem_a), name="faxfleet"))
    modem.port.command("ATE0V1Q0")
    return modem


def _bad_rows_per_page(modem: _RecordingModem, coding: Coding) -> list[int]:
    """Bad rows our decoder finds in each page of non-ECM page data modem A received.

    TCF (zeros) decodes to no rows; a page is every stretch that decodes to a page."""
    decoded = [pagedata.decode(data, coding) for data in modem.data_received if any(data)]
    return [page.bad_rows for page in decoded if page.rows > 100]


def _answer_in_background(modem: Class1Modem, got: dict[str, SessionResult]) -> threading.Thread:
    def answer() -> None:
        if modem.port.wait_for(["RING"], 200) == "RING":
            got["result"] = receive_fax(modem, Config(ident="+1 555 0199"))

    thread = threading.Thread(target=answer, name="faxfleet-receiver")
    thread.start()
    return thread


def _efax_sends(
    line: SoftLine, files: Sequence[Path], ident: str, timeout: float = 240.0
) -> efax_tool.EfaxSendReport:
    """efax on modem B sends ``files`` to modem A with ``ident`` as its TSI (``-l``)."""
    argv = efax_tool.send_argv(line.modem_b, line.number_a, files)
    at = argv.index("-t")
    argv[at:at] = ["-l", ident]
    log = line.workdir / "efax-send-b.log"
    proc = line.processes.start("efax-sender", argv, log)
    deadline = time.monotonic() + timeout
    while exit_status(proc) is None:
        assert time.monotonic() < deadline, f"efax still sending after {timeout} s"
        time.sleep(0.2)
    line.processes.stop(proc)
    return efax_tool.parse_send_log(log.read_text(errors="replace"))


HYLAFAX_SEND_DONE = 2
"""faxsend's exit status for a job whose every page was confirmed (send_done)."""


@dataclass(frozen=True)
class HylafaxJob:
    """How HylaFAX's sender says a job went: its exit status and the job file it updated."""

    status: int
    npages: int
    """Pages the receiver confirmed, as faxsend wrote back into the job file."""
    notice: str
    log: Path | None
    """faxsend's session trace (AT commands, HDLC frames) of the call."""
    modem_status: str
    """faxsend's last word on the modem (status/<devid>), e.g. why it never dialled."""
    trace_tail: str
    """The end of the session trace, kept for failure messages: the line's files go
    when the test leaves the line."""

    @property
    def ok(self) -> bool:
        return self.status == HYLAFAX_SEND_DONE


def _hylafax_sends(
    line: SoftLine, pages: Sequence[bytes], *, ecm: bool = True, timeout: float = 240.0
) -> HylafaxJob:
    """HylaFAX's own sender, ``faxsend``, on modem B sends ``pages`` (MH) to modem A;
    ``ecm=False`` has it send 2-D MR without ECM instead of its default (MMR with ECM).

    faxsend normally gets its jobs from the faxq scheduler; here the job file (sendq(5))
    is written as faxq leaves it for faxsend: TIFF/F documents in docq/ and a
    ``pagehandling`` of "00" (standard) or "01" (fine) per page (1728 pixels, A4, 1-D MH
    document) with "S" (MPS) after each page but the last, "P" (EOP). Without the
    scheduler there is no hand-over of the modem between faxq and faxgetty, which is what
    made HylaFAX a slow, unreliable sender on this line (docs/softline.md). faxsend
    converts the pages to what it negotiates (MMR with ECM when the receiver has both)."""
    spool = line.workdir / "modem-b" / "hylafax-send"
    hylafax.build_spool(spool, line.modem_b, f"+1.555.{line.number_b}")
    documents = []
    for number, page in enumerate(pages, 1):
        documents.append(spool / "docq" / f"doc{number}.tif")
        documents[-1].write_bytes(page)
    job = spool / "sendq" / "q1"
    handling = "".join(
        ("01" if pagedata.page_is_fine(page) else "00") + ("S" if n < len(pages) else "P")
        for n, page in enumerate(pages, 1)
    )
    fields = {
        "jobid": "1",
        "groupid": "1",
        "state": "3",
        "number": line.number_a,
        "external": line.number_a,
        "modem": "any",
        "client": "localhost",
        "owner": "faxfleet",
        "sender": "faxfleet tests",
        "mailaddr": "nobody@localhost",
        "totpages": str(len(pages)),
        "maxtries": "1",
        "maxdials": "1",
        "pagechop": "none",
        "notify": "none",
        "pagehandling": handling,
    }
    if not ecm:
        fields |= {"desiredec": "0", "desireddf": "1"}  # ECM off, 2-D MR
    lines = [f"{key}:{value}" for key, value in fields.items()]
    lines += [f"fax:0::docq/{path.name}" for path in documents]
    job.write_text("\n".join(lines) + "\n")
    uucp = pwd.getpwnam("uucp")  # faxsend works as uucp, like faxgetty
    for path in (*documents, job):
        os.chown(path, uucp.pw_uid, uucp.pw_gid)
    exe = shutil.which("faxsend") or "/usr/sbin/faxsend"
    argv = [exe, "-l", "-m", hylafax.device_id(line.modem_b), "sendq/q1"]
    proc = line.processes.start("faxsend", argv, line.workdir / "faxsend.log", cwd=spool)
    deadline = time.monotonic() + timeout
    while (status := exit_status(proc)) is None:
        assert time.monotonic() < deadline, f"faxsend still sending after {timeout} s"
        time.sleep(0.2)
    line.processes.stop(proc)
    written = dict(entry.split(":", 1) for entry in job.read_text().splitlines() if ":" in entry)
    traces = sorted((spool / "log").glob("c*"))
    trace = traces[-1].read_text(errors="replace").splitlines() if traces else []
    return HylafaxJob(
        status=status,
        npages=int(written.get("npages", "0")),
        notice=written.get("status", ""),
        log=traces[-1] if traces else None,
        modem_status=hylafax.modem_status(spool, line.modem_b),
        trace_tail="\n".join(trace[-15:]),
    )


SETUP_ATTEMPTS = 5
"""How many fresh lines HylaFAX's sender gets when it gives up before dialling."""


def _hylafax_calls_us(
    pages: Sequence[bytes], *, ecm: bool = True
) -> tuple[HylafaxJob, SessionResult | None, _RecordingModem]:
    """HylaFAX's ``faxsend`` on modem B calls our receiver on modem A with ``pages``.

    Now and then faxsend gives up while it is still setting up modem B: it exits asking
    for a retry, writes no session trace, and our modem never rings (docs/t30.md, "HylaFAX
    as a sender"). That is HylaFAX's own start-up, before any call, so such an attempt is
    made again on a fresh line, at most ``SETUP_ATTEMPTS`` times in all, after the line's
    modems have settled. A call that was dialled is never repeated: whatever happens on
    the line is what the test judges."""
    for attempt in range(1, SETUP_ATTEMPTS + 1):
        with SoftLine(far_end=None) as line:
            iaxmodem.probe(line.modem_b, 30)
            time.sleep(IAXMODEM_GUARD_SECONDS)
            modem = _modem(line)
            got: dict[str, SessionResult] = {}
            thread = _answer_in_background(modem, got)
            job = _hylafax_sends(line, pages, ecm=ecm)
            dialled = job.log is not None or job.ok
            thread.join(60 if dialled else 0)
            modem.port.close()
        if dialled or attempt == SETUP_ATTEMPTS:
            return job, got.get("result"), modem
        print(f"faxsend gave up before dialling (attempt {attempt}): {job.modem_status}")
    raise AssertionError("unreachable")


IAXMODEM_GUARD_SECONDS = 5.0
"""iaxmodem refuses calls for about 5 s after it starts or hangs up (docs/softline.md)."""


def _hylafax_pages_accepted(log: Path) -> list[int]:
    """Page numbers HylaFAX's session trace reports as received ("RECV FAX ... page N")."""
    found = re.findall(r"RECV FAX \(\w+\): from .*, page (\d+) in", log.read_text(errors="replace"))
    return [int(number) for number in found]


# --- the calls ---------------------------------------------------------------------------------


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_we_send_three_fine_mh_pages_to_efax() -> None:
    """Us -> efax: fine, MH (efax decodes only 1-D), no ECM (efax has none), three pages
    (text, table, scanned letter) sent MPS, MPS, EOP; every page compared, 0 bad lines."""
    pages = _pages(Resolution.FINE, Coding.MH)
    with SoftLine(far_end="efax") as line:
        line.wait_ready()
        modem = _modem(line)
        result = send_fax(modem, line.number_b, pages, Config(ident=OUR_ID))
        (fax,) = line.wait_received(1, timeout=90)
        modem.port.close()
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding) == (3, False, "mh")
        assert fax.pages == 3 and fax.bad_lines == (0, 0, 0)
        _assert_pages_equal(pages, [_rows_of_file(path) for path in fax.files])


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_we_send_three_fine_mmr_pages_to_hylafax_with_ecm() -> None:
    """Us -> HylaFAX: fine, MMR, ECM (256-byte frames), V.17 14400, three pages (text,
    table, scanned letter) in ECM blocks ended by PPS-MPS, PPS-EOP; every page of
    HylaFAX's recvq TIFF compared (bad lines: none possible, ECM frames are checked)."""
    pages = _pages(Resolution.FINE, Coding.MMR)
    with SoftLine(far_end="hylafax") as line:
        line.wait_ready()
        modem = _modem(line)
        result = send_fax(modem, line.number_b, pages, Config(ident=OUR_ID))
        (fax,) = line.wait_received(1, timeout=90)
        modem.port.close()
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding, result.bit_rate) == (
            3,
            True,
            "mmr",
            14400,
        )
        # With ECM HylaFAX checks frames (FCS), not rows: its log counts no lines, but
        # it logs each page it accepted; the pixels are compared below.
        assert fax.pages == 3 and fax.bad_lines == ()
        assert _hylafax_pages_accepted(fax.log) == [1, 2, 3]
        (tiff,) = fax.files
        _assert_pages_equal(pages, [_rows_of_file(tiff, n) for n in range(3)])


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_we_send_two_standard_mr_pages_to_hylafax_without_ecm() -> None:
    """Us -> HylaFAX: standard, MR (K = 2: fill bits, EOL + tag bit, RTC), no ECM, two
    pages (text, table), which HylaFAX's own decoder reads; both pages compared."""
    pages = _pages(Resolution.STANDARD, Coding.MMR, count=2)
    with SoftLine(far_end="hylafax") as line:
        line.wait_ready()
        modem = _modem(line)
        config = Config(ident=OUR_ID, wishes=Wishes(ecm=False))
        result = send_fax(modem, line.number_b, pages, config)
        (fax,) = line.wait_received(1, timeout=90)
        modem.port.close()
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding) == (2, False, "mr")
        assert fax.pages == 2 and fax.bad_lines == (0, 0)
        assert fax.lines == (1146, 1146)
        (tiff,) = fax.files
        _assert_pages_equal(pages, [_rows_of_file(tiff, n) for n in range(2)])


@pytest.mark.flaky(reruns=2, reruns_delay=5)  # efax as a sender: see docs/faxing.md
@pytest.mark.realline
@pytest.mark.timeout(300)
def test_efax_sends_two_fine_pages_to_us(tmp_path: Path) -> None:
    """efax -> us: fine, MH, no ECM, two pages (text, scanned letter) sent MPS, EOP; each
    arrives with efax's TSI, our decoder finds 0 bad rows in the line data, and every page
    we store equals what efax sent."""
    pages = render_documents([TEXT, _scan()], Resolution.FINE, coding=Coding.MH)
    files = []
    for number, page in enumerate(pages, 1):
        files.append(tmp_path / f"page{number}.tif")
        files[-1].write_bytes(page)
    with SoftLine(far_end=None) as line:
        modem = _modem(line)
        got: dict[str, SessionResult] = {}
        thread = _answer_in_background(modem, got)
        report = _efax_sends(line, files, EFAX_ID)
        thread.join(60)
        modem.port.close()
        assert report.ok and report.pages_sent == 2, report
        result = got["result"]
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding) == (2, False, "mh")
        assert result.remote_id == EFAX_ID
        assert _bad_rows_per_page(modem, Coding.MH) == [0, 0]
        _assert_pages_equal(pages, [_rows(page) for page in result.received], trailer=True)


@pytest.mark.realline
@pytest.mark.timeout(600)
def test_hylafax_sends_two_standard_pages_to_us() -> None:
    """HylaFAX -> us: standard, MMR, ECM, V.17 14400, two pages (text, table) sent as
    partial pages in ECM blocks with PPS-MPS, PPS-EOP; HylaFAX converts its MH documents
    to MMR itself. HylaFAX reports both pages confirmed; each arrives with HylaFAX's TSI
    and equals what it sent."""
    pages = _pages(Resolution.STANDARD, Coding.MH, count=2)
    job, result, _ = _hylafax_calls_us(pages)
    assert job.ok and job.npages == 2, job
    assert result is not None and result.ok, result
    assert (result.pages, result.ecm, result.coding, result.bit_rate) == (2, True, "mmr", 14400)
    assert result.remote_id == HYLAFAX_ID
    _assert_pages_equal(pages, [_rows(page) for page in result.received])


@pytest.mark.realline
@pytest.mark.timeout(600)
def test_hylafax_sends_a_fine_mr_page_to_us_without_ecm() -> None:
    """HylaFAX -> us: fine, MR (K = 4, HylaFAX's own encoder), no ECM, one page (the
    scanned letter); HylaFAX reports it confirmed, our decoder finds 0 bad rows in the
    line data, and the stored page equals what HylaFAX sent."""
    pages = _pages(Resolution.FINE, Coding.MH)[2:]
    job, result, modem = _hylafax_calls_us(pages, ecm=False)
    assert job.ok and job.npages == 1, job
    assert result is not None and result.ok, result
    assert (result.pages, result.ecm, result.coding) == (1, False, "mr")
    assert result.remote_id == HYLAFAX_ID
    assert _bad_rows_per_page(modem, Coding.MR) == [0]
    _assert_pages_equal(pages, [_rows(page) for page in result.received])


def test_a_row_closed_by_a_zero_length_black_run_is_not_bad() -> None:
    """What efax sends as the last blank row of a page: "white 1728, black 0". The row
    has its 1728 pixels before the extra code word, so it is a good row (found on the
    efax -> us call, where our decoder once counted it bad)."""
    white_1728 = "010011011" + "00110101"  # make-up 1728 + terminating 0
    black_0 = "0000110111"
    bits = EOL + white_1728 + black_0 + "000" + EOL + white_1728 + EOL * 6
    assert list(t4.g3_rows(bits, two_d=False)) == [[], []]
    page = pagedata.decode(t4.from_bits(bits), Coding.MH)
    assert (page.rows, page.bad_rows) == (2, 0)
