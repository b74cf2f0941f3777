"""The software fax line: two real iaxmodem modems, with fax software we did not write on
both ends (efax, HylaFAX), so a pass here proves the rig itself, not our own T.30 code.

The parsers are checked on log text the far ends really wrote; the ``realline`` tests dial
real calls (about 30 s a page) and are kept few.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import serial
from PIL import Image

from faxfleet.kinds import Resolution
from faxfleet.softline import SoftLine, tiff_page_count
from faxfleet.softline.efax import parse_receive_log, parse_send_log
from faxfleet.softline.hylafax import device_id, parse_session_log
from faxfleet.softline.iaxmodem import config_argument
from workers.render import render_documents
from workers.render.coding import Coding

# -- log parsing, on text the far ends wrote during real calls -----------------------------

EFAX_RECEIVE_LOG = """\
efax: 08:10 fax call answered
efax: 08:34 received 1176 lines, 0 errors
efax: 08:35 wrote /x/rx.001 as 1728x1176 pixel 204x98 dpi TIFF page (10990 bytes)
efax: 08:35 sent MCF - page OK
efax: 08:40 received 1176 lines, 3 errors
efax: 08:41 wrote /x/rx.002 as 1728x1176 pixel 204x98 dpi TIFF page (10990 bytes)
efax: 08:37 received DCN - disconnect
efax: 08:37 wrote /x/rx.003 as 1728x0 pixel 204x98 dpi TIFF page (10 bytes)
efax: 08:37 removed /x/rx.003
"""

EFAX_SEND_LOG = """\
efax: 13:32 sent 20+1156 lines, 10788+0 bytes, 6 s  14384 bps
efax: 08:36 received MCF - page OK
efax: 08:37 done, returning 0 (success)
"""

HYLAFAX_SESSION_LOG = """\
Nov 25 14:10:03.58: [ 9985]: RECV: 1176 total lines, 0 bad lines, 0 consecutive bad lines
Nov 25 14:10:03.58: [ 9985]: RECV: end page
Nov 25 14:10:07.24: [ 9985]: RECV FAX (000000001): from , page 1 in 0:00:16, INF, \
3.85 line/mm, 1-D MH, 14400 bit/s
Nov 25 14:10:07.24: [ 9985]: RECV FAX (000000001): recvq/fax000000001.tif from , route to \
<unspecified>, 1 pages in 0:00:20
"""


def test_efax_receive_log_gives_kept_pages_with_their_error_counts() -> None:
    pages = parse_receive_log(EFAX_RECEIVE_LOG)
    assert [p.path.name for p in pages] == ["rx.001", "rx.002"]
    assert [(p.lines, p.errors) for p in pages] == [(1176, 0), (1176, 3)]
    assert pages[0].width == 1728


def test_efax_send_log_gives_line_time_and_exit_status() -> None:
    report = parse_send_log(EFAX_SEND_LOG)
    assert report.ok and report.pages_sent == 1
    assert report.seconds_per_page == (6,) and report.bits_per_second == (14384,)
    assert not parse_send_log("efax: 08:37 done, returning 1 (busy)").ok


def test_hylafax_session_log_gives_bad_lines_and_time_per_page() -> None:
    (page,) = parse_session_log(HYLAFAX_SESSION_LOG)
    assert (page.total_lines, page.bad_lines, page.seconds) == (1176, 0, 16)
    assert page.bits_per_second == 14400


def test_modem_names_reach_our_files_from_iaxmodems_config_dir(tmp_path: Path) -> None:
    config = tmp_path / "modem.conf"
    assert Path(os.path.normpath("/etc/iaxmodem/" + config_argument(config))) == config
    assert device_id(Path("/tmp/line/ttySLa")) == "_tmp_line_ttySLa"
    assert device_id(Path("/dev/ttyIAX0")) == "ttyIAX0"


def test_page_count_walks_every_directory(tmp_path: Path) -> None:
    frames = [Image.new("1", (64, 32), 1) for _ in range(3)]
    path = tmp_path / "three.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert tiff_page_count(path) == 3
    (tmp_path / "no.tif").write_bytes(b"%PDF-1.4")
    with pytest.raises(ValueError):
        tiff_page_count(tmp_path / "no.tif")


# -- the real line --------------------------------------------------------------------------

TEXT = (
    "faxfleet software fax line\n\n"
    + "The quick brown fox jumps over the lazy dog. 0123456789 ()[]{}<>!?\n" * 30
).encode()


def _page(tmp_path: Path, resolution: Resolution, name: str) -> Path:
    """One rendered page, MH-coded: efax reads Group 3 TIFF only."""
    (data,) = render_documents([TEXT], resolution, coding=Coding.MH)
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _rows(path: Path) -> list[bytes]:
    """Rows as bytes, black = 1, whatever the file's photometric or fill order."""
    image = Image.open(path).convert("L").point(lambda v: 255 if v < 128 else 0).convert("1")
    width, height = image.size
    data = image.tobytes()
    stride = (width + 7) // 8
    return [data[y * stride : (y + 1) * stride] for y in range(height)]


def _ink_span(rows: list[bytes]) -> tuple[int, int]:
    inked = [y for y, row in enumerate(rows) if any(row)]
    return inked[0], inked[-1]


def _assert_same_page(sent: Path, received: Path) -> None:
    """Every row of the sent page arrives unchanged; the receiver may add blank margin rows
    (efax's sender puts a blank header band on top), so rows are aligned on the first
    inked row, and nothing may be inked above it."""
    a, b = _rows(sent), _rows(received)
    a_first, a_last = _ink_span(a)
    b_first, _ = _ink_span(b)
    shift = b_first - a_first
    assert len(b) >= a_last + shift + 1
    assert sum(1 for row in a if any(row)) > 100  # the page really carries text
    mismatched = [y for y in range(a_first, a_last + 1) if a[y] != b[y + shift]]
    assert mismatched == []


@pytest.mark.realline
@pytest.mark.parametrize("use_namespace", [True, False], ids=["namespace", "host-loopback"])
def test_line_comes_up_reachable_from_this_namespace_and_leaves_nothing_behind(
    use_namespace: bool,
) -> None:
    line = SoftLine(far_end=None, use_namespace=use_namespace)
    with line:
        assert (line.namespace is not None) is use_namespace
        where = ["ip", "netns", "exec", line.namespace.name] if line.namespace else []
        listening = subprocess.run(
            [*where, "ss", "-uln"], capture_output=True, text=True, check=True
        ).stdout
        for port in line.ports:
            assert f":{port} " in listening
        # Our process stays in the host namespace and drives modem A through its pty.
        with serial.Serial(str(line.modem_a), 115200, timeout=2) as modem:
            modem.write(b"AT+FCLASS=?\r")
            reply = modem.read_until(b"OK\r\n")
        assert b"1" in reply and reply.endswith(b"OK\r\n")
        pids = line.processes.pids()
        assert len(pids) == 2
    if use_namespace:
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert line.namespace.name not in namespaces.stdout
    assert not line.workdir.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.flaky(reruns=2, reruns_delay=5)  # efax as a sender: see docs/faxing.md
@pytest.mark.realline
@pytest.mark.timeout(240)
def test_efax_to_efax_standard_page_arrives_pixel_for_pixel(tmp_path: Path) -> None:
    page = _page(tmp_path, Resolution.STANDARD, "standard.tif")
    with SoftLine(far_end="efax") as line:
        line.wait_ready()
        started = time.monotonic()
        report = line.send_efax([page])
        call = time.monotonic() - started
        (fax,) = line.wait_received(1, timeout=60)
        assert report.ok and report.pages_sent == 1
        assert fax.pages == 1 and fax.bad_lines == (0,)
        _assert_same_page(page, fax.files[0])
        assert Image.open(fax.files[0]).info["dpi"][1] == pytest.approx(98, abs=1)
    print(f"\nefax -> efax, standard page: {call:.1f} s call, {report.seconds_per_page} s data")


@pytest.mark.flaky(reruns=2, reruns_delay=5)  # efax as a sender: see docs/faxing.md
@pytest.mark.realline
@pytest.mark.timeout(300)
def test_hylafax_receives_every_fine_page_with_no_bad_lines(tmp_path: Path) -> None:
    pages = [_page(tmp_path, Resolution.FINE, f"fine{n}.tif") for n in (1, 2)]
    with SoftLine(far_end="hylafax") as line:
        line.wait_ready()
        started = time.monotonic()
        report = line.send_efax(pages)
        call = time.monotonic() - started
        (fax,) = line.wait_received(1, timeout=60)
        assert report.ok and report.pages_sent == 2
        assert fax.pages == 2 and len(fax.bad_lines) == 2
        assert fax.bad_lines == (0, 0)
        assert all(lines >= 2292 for lines in fax.lines)
        assert "RECV FAX" in fax.log.read_text()
    print(f"\nefax -> HylaFAX, 2 fine pages: {call:.1f} s call, HylaFAX per page {fax.seconds} s")


@pytest.mark.flaky(reruns=2, reruns_delay=5)  # efax as a sender: see docs/faxing.md
@pytest.mark.realline
@pytest.mark.timeout(240)
def test_efax_on_b_sends_to_whatever_answers_on_modem_a(tmp_path: Path) -> None:
    """The direction faxfleet's own receiving side is tested in: the far end dials A."""
    page = _page(tmp_path, Resolution.STANDARD, "standard.tif")
    with SoftLine(far_end=None) as line:
        on_a = line.add_receiver("efax", "a")
        line.wait_ready()
        report = line.send_efax([page], from_modem="b")
        assert report.ok and report.pages_sent == 1
        deadline = time.monotonic() + 30
        while not (faxes := on_a.received()) and time.monotonic() < deadline:
            time.sleep(0.5)
        (fax,) = faxes
        assert fax.pages == 1 and fax.bad_lines == (0,)
        _assert_same_page(page, fax.files[0])
