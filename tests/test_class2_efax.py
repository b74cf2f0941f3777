"""efax, an independent Class 2.0 host, sends faxes through the emulated modem.

The driver and the emulator were written from the same reading of T.32; efax (Debian's
``efax``, written against real Class 2.0 modems) was not. If efax gets through a call,
including a page rejected with RTN and sent again, the emulator speaks Class 2.0 the way
hosts in the field expect, and the driver's tests against it mean something.

efax measures each page in whole seconds and divides by that, so a page must take at
least a second of wall time: the pages are dense and the line runs only 10 times faster
than real.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from faxfleet.kinds import Resolution
from workers.fax.emulator.class2 import Behaviour, Class2Emulator, FarEnd
from workers.fax.emulator.class2.modem import count_lines
from workers.render.coding import Coding
from workers.render.tiff import FaxBitmap, encode_bitmap

ROWS = 300


@pytest.fixture
def pages(tmp_path: Path) -> list[Path]:
    """Two noisy pages (about 24 KB each in MR: over a second at 10 x 14400 bit/s)."""
    rng = random.Random(7)
    bits = bytes(rng.choice((0, 0, 0, 0, 0, 0, 0, 0x80, 0x08, 0x3C)) for _ in range(216 * ROWS))
    tiff = encode_bitmap(FaxBitmap(1728, ROWS, bits), Resolution.STANDARD, Coding.MH)
    paths = [tmp_path / "p1.tif", tmp_path / "p2.tif"]
    for path in paths:
        path.write_bytes(tiff)
    return paths


def efax(url: str, number: str, pages: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["efax", "-d", url, "-o0", "-l", "EFAX HOST", "-v", "ewinchrmta", "-t", number]
        + [str(p) for p in pages],
        capture_output=True,
        text=True,
        timeout=120,
    )


def sent_lines(log: str) -> list[int]:
    """Rows per page as efax counted them ("sent 20+310 lines": header + image)."""
    return [int(a) + int(b) for a, b in re.findall(r"sent (\d+)\+(\d+) lines", log)]


def test_efax_sends_two_pages(pages: list[Path]) -> None:
    with Class2Emulator(scale=10.0) as modem:
        run = efax(modem.url, "100", pages)
        assert run.returncode == 0, run.stderr[-3000:]
        (call,) = modem.calls
    assert call.number == "100"
    assert call.local_id.strip() == "EFAX HOST"
    assert call.responses == ["MCF", "MCF"]
    assert call.hangup == 0x00
    assert call.session is not None and call.session.bit_rate == 14400
    # the rows the emulator counted on the line are the rows efax says it sent
    counted = [count_lines(page) for page in call.pages]
    assert counted == sent_lines(run.stderr)
    assert all(n > ROWS for n in counted)  # efax adds its header rows


def test_efax_resends_a_rejected_page(pages: list[Path]) -> None:
    with Class2Emulator({"500": FarEnd(Behaviour.REJECT_PAGE, page=1)}, scale=10.0) as modem:
        run = efax(modem.url, "500", pages)
        assert run.returncode == 0, run.stderr[-3000:]
        (call,) = modem.calls
    # RTN, then efax sends the page again after the modem retrained one step slower
    assert call.responses == ["RTN", "MCF", "MCF"]
    assert call.session is not None and call.session.bit_rate == 12000
    assert call.hangup == 0x00
