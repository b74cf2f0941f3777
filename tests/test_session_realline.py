"""Our T.30 engine on a real software fax line: iaxmodem (spandsp's modems) on both ends,
with fax software we did not write on the far end (efax, HylaFAX). About half a minute of
real line time per call, so: four calls, each proving one direction or mode."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from faxfleet.kinds import Resolution
from faxfleet.softline import SoftLine
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import Class1Modem
from workers.fax.session import SessionResult, receive_fax, send_fax
from workers.fax.t30.engine import Config
from workers.fax.t30.negotiate import Wishes
from workers.render import render_documents
from workers.render.coding import Coding
from workers.render.tiff import read_pages

TEXT = (
    "faxfleet T.30 engine on a real line\n\n"
    + "The quick brown fox jumps over the lazy dog. 0123456789 ()[]{}<>!?\n" * 30
).encode()


def _page(resolution: Resolution, coding: Coding) -> bytes:
    (data,) = render_documents([TEXT], resolution, coding=coding)
    return data


def _rows_of_file(path: Path) -> list[bytes]:
    """Rows (black = 1) of the first page of any bilevel TIFF, as Pillow decodes it."""
    image = Image.open(path).convert("L").point(lambda v: 255 if v < 128 else 0).convert("1")
    stride = (image.width + 7) // 8
    data = image.tobytes()
    return [data[y * stride : (y + 1) * stride] for y in range(image.height)]


def _rows(page: bytes) -> list[bytes]:
    bitmap = next(read_pages(page)).bitmap
    size = bitmap.row_bytes
    return [bitmap.bits[y * size : (y + 1) * size] for y in range(bitmap.height)]


def _assert_same_ink(sent: list[bytes], received: list[bytes]) -> None:
    """The inked rows arrive unchanged; a far end may add or chop blank margin rows."""
    inked = [y for y, row in enumerate(sent) if any(row)]
    got = [y for y, row in enumerate(received) if any(row)]
    assert len(inked) > 100
    shift = got[0] - inked[0]
    assert [y + shift for y in inked] == got
    assert all(sent[y] == received[y + shift] for y in inked)


def _modem(line: SoftLine) -> Class1Modem:
    modem = Class1Modem(AtPort.open(str(line.modem_a), name="faxfleet"))
    modem.port.command("ATE0V1Q0")
    return modem


@pytest.mark.realline
@pytest.mark.timeout(240)
def test_we_send_to_efax_without_ecm() -> None:
    page = _page(Resolution.STANDARD, Coding.MMR)
    with SoftLine(far_end="efax") as line:
        line.wait_ready()
        modem = _modem(line)
        result = send_fax(modem, line.number_b, [page], Config(ident="+1 555 0100"))
        (fax,) = line.wait_received(1, timeout=60)
        modem.port.close()
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding) == (1, False, "mh")  # efax: 1-D only
        assert fax.pages == 1 and fax.bad_lines == (0,)
        _assert_same_ink(_rows(page), _rows_of_file(fax.files[0]))


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_we_send_to_hylafax_with_ecm_and_mmr() -> None:
    pages = [_page(Resolution.FINE, Coding.MMR)]
    with SoftLine(far_end="hylafax") as line:
        line.wait_ready()
        modem = _modem(line)
        result = send_fax(modem, line.number_b, pages, Config(ident="+1 555 0100"))
        (fax,) = line.wait_received(1, timeout=60)
        modem.port.close()
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding, result.bit_rate) == (
            1,
            True,
            "mmr",
            14400,
        )
        assert fax.pages == 1
        assert "RECV FAX" in fax.log.read_text()
        _assert_same_ink(_rows(pages[0]), _rows_of_file(fax.files[0]))


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_we_send_two_fine_mr_pages_to_hylafax_without_ecm() -> None:
    # Without ECM, HylaFAX decodes our MR rows (fill bits, EOL + tag bits, RTC) itself.
    pages = render_documents([TEXT, b"second page\n" * 10], Resolution.FINE, coding=Coding.MMR)
    with SoftLine(far_end="hylafax") as line:
        line.wait_ready()
        modem = _modem(line)
        result = send_fax(modem, line.number_b, pages, Config(wishes=Wishes(ecm=False)))
        (fax,) = line.wait_received(1, timeout=90)
        modem.port.close()
        assert result.ok, result
        assert (result.pages, result.ecm, result.coding) == (2, False, "mr")
        assert fax.pages == 2
        assert fax.lines == (2292, 2292) and fax.bad_lines == (0, 0)


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_hylafax_sends_to_us(tmp_path: Path) -> None:
    # Standard resolution: sendfax asks for it by default, so HylaFAX sends the page as is.
    page = _page(Resolution.STANDARD, Coding.MH)
    (tmp_path / "page.tif").write_bytes(page)
    with SoftLine(far_end="hylafax") as line:
        line.wait_ready()
        modem = _modem(line)
        got: dict[str, SessionResult] = {}

        def answer() -> None:
            if modem.port.wait_for(["RING"], 200) == "RING":
                got["result"] = receive_fax(modem, Config(ident="+1 555 0199"))

        thread = threading.Thread(target=answer)
        thread.start()
        job = line.send_hylafax([tmp_path / "page.tif"], timeout=240)
        thread.join(60)
        modem.port.close()
        assert job.ok, job
        result = got["result"]
        assert result.ok, result
        assert result.pages == 1 and len(result.received) == 1
        assert result.ecm and result.coding == "mmr"
        _assert_same_ink(_rows(page), _rows(result.received[0]))
