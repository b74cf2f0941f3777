"""Fuzzing the renderer's input side with hypothesis.

Valid PDFs, PNGs, JPEGs, TIFFs, text and Office packages are mutated (bit flips, byte
overwrites, truncation, splices of two documents) and fed to ``detect_type`` and, in
process, to ``render_documents``. The only allowed outcomes are a list of valid fax pages or
:class:`RenderError` (``UnsupportedDocument`` for ``detect_type``); anything else is a bug.
Inputs that once broke that rule are kept in ``tests/fuzz_corpus/`` and replayed.

Budget: a few seconds in CI (``max_examples`` is small and derandomised); set
``FAXFLEET_FUZZ_EXAMPLES`` to fuzz longer locally.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from faxfleet.documents import UnsupportedDocument, detect_type
from faxfleet.messages import Resolution
from tests.pdfgen import assemble_pdf
from workers.render import RenderError, render_documents

CORPUS = Path(__file__).parent / "fuzz_corpus"
EXAMPLES = int(os.environ.get("FAXFLEET_FUZZ_EXAMPLES", "150"))
REPEATABLE = "FAXFLEET_FUZZ_EXAMPLES" not in os.environ  # CI replays the same examples
MAX_PAGES = 3


def _pdf() -> bytes:
    content = b"BT /F1 18 Tf 72 700 Td (Fuzz me) Tj ET 0 0 1 rg 72 72 200 100 re f"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Rotate 90 "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>",
    ]
    return assemble_pdf(objects)


def _image(fmt: str, mode: str = "L", **save: object) -> bytes:
    image = Image.new(mode, (64, 48), "white")
    image.paste(Image.new(mode, (32, 24), "black"), (16, 12))
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def _tiff_two_pages() -> bytes:
    out = io.BytesIO()
    first = Image.new("1", (80, 40), 1)
    first.save(out, format="TIFF", save_all=True, append_images=[first], compression="group4")
    return out.getvalue()


def _docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


SEEDS: dict[str, bytes] = {
    "pdf": _pdf(),
    "png": _image("PNG"),
    "png-rgba": _image("PNG", "RGBA"),
    "jpeg": _image("JPEG", "RGB", quality=50),
    "tiff": _image("TIFF"),
    "tiff-g4-2p": _tiff_two_pages(),
    "text": "Invoice\tNo. 17\nTotal: 12,50 €\n\x0cPage two\n".encode(),
    "docx": _docx(),
}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(sorted(SEEDS.values()))))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "byte", "truncate", "splice", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "byte":
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("0"), ord("9")]))
        elif action == "truncate":
            del data[at:]
        elif action == "splice":
            other = draw(st.sampled_from(sorted(SEEDS.values())))
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def check_render(data: bytes) -> None:
    """The contract: pages that look like fax TIFFs, or RenderError; nothing else."""
    try:
        kind = detect_type(data)
    except UnsupportedDocument:
        kind = None
    if kind is not None and kind.is_office:
        return  # converted by LibreOffice first (tests/test_office.py), not fuzzed in process
    try:
        pages = render_documents([data], Resolution.STANDARD, max_pages=MAX_PAGES)
    except RenderError:
        return
    assert 1 <= len(pages) <= MAX_PAGES
    for page in pages:
        assert page.startswith(b"II*\x00")
        with Image.open(io.BytesIO(page)) as decoded:
            assert decoded.width == 1728


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_themselves(name: str) -> None:
    if name == "docx":
        assert detect_type(SEEDS[name]).is_office
    else:
        check_render(SEEDS[name])


@settings(
    max_examples=EXAMPLES * 5,
    deadline=None,
    derandomize=REPEATABLE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_detect_type_never_raises_anything_else(data: bytes) -> None:
    try:
        kind = detect_type(data)
    except UnsupportedDocument:
        return
    assert kind.value


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=REPEATABLE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_render_documents_pages_or_render_error(data: bytes) -> None:
    check_render(data)


@settings(max_examples=EXAMPLES * 5, deadline=None, derandomize=REPEATABLE)
@given(st.binary(max_size=2048))
def test_detect_type_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(UnsupportedDocument):
        detect_type(data)


# Crashes found by fuzzing, not fixed yet in the reader modules (owned elsewhere): the
# expected exception; delete the entry once the reader turns it into a RenderError.
KNOWN_CRASHES: dict[str, type[BaseException]] = {}
"""Corpus files that still crash the renderer (none: each found crash is fixed and its
input kept in tests/fuzz_corpus/ as a regression test)."""


def _corpus() -> list[pytest.param]:
    cases = []
    for path in sorted(CORPUS.glob("*")):
        crash = KNOWN_CRASHES.get(path.name)
        marks = [pytest.mark.xfail(raises=crash, reason="known crash")] if crash else []
        cases.append(pytest.param(path, id=path.name, marks=marks))
    return cases


@pytest.mark.parametrize("path", _corpus())
def test_corpus_regressions(path: Path) -> None:
    check_render(path.read_bytes())
