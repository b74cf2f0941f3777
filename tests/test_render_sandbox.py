"""The sandboxed renderer: same pages as in-process, and specific errors at its limits.

Every case runs a real child process with real ``RLIMIT_AS`` / ``RLIMIT_CPU`` limits.
"""

from __future__ import annotations

import io
import os
import signal
import zlib

import pytest
from PIL import Image

from faxfleet.messages import Resolution
from faxfleet.settings import Settings
from tests.pdfgen import assemble_pdf
from workers.render import RenderError, render_documents
from workers.render.sandbox import render_sandboxed


def make_pdf(page: tuple[int, int] = (612, 792), image: tuple[int, int] | None = None) -> bytes:
    """A one-page PDF, optionally painted with a 1-bit image of the given pixel size
    (Flate-compressed zeros: a few hundred KB that claim hundreds of MB decoded)."""
    if image:
        w, h = image
        raw = zlib.compress(b"\x00" * ((w + 7) // 8 * h), 9)
        content = b"q %d 0 0 %d 0 0 cm /Im1 Do Q" % page
        resources = b"/Resources << /XObject << /Im1 5 0 R >> >>"
    else:
        raw, content, resources = b"", b"BT /F1 24 Tf 72 700 Td (Hello) Tj ET", b""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] %s /Contents 4 0 R >>"
        % (*page, resources),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    if image:
        objects.append(
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 1 /Filter /FlateDecode /Length %d >>\nstream\n"
            % (*image, len(raw))
            + raw
            + b"\nendstream"
        )
    return assemble_pdf(objects)


def big_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 255).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("resolution", [Resolution.STANDARD, Resolution.FINE])
def test_same_pages_as_in_process(resolution: Resolution) -> None:
    docs = [make_pdf(), b"Hello\tworld\n\x0cpage two\n", big_png(300, 200)]
    assert render_sandboxed(
        docs, resolution, max_pages=10, timeout_s=60, memory_mb=1024
    ) == render_documents(docs, resolution, max_pages=10)


def test_document_errors_pass_through_unchanged() -> None:
    docs = [b"fine\n", b"\x00\x01 not a document"]
    with pytest.raises(RenderError) as in_process:
        render_documents(docs, Resolution.FINE)
    with pytest.raises(RenderError) as sandboxed:
        render_sandboxed(docs, Resolution.FINE, timeout_s=30, memory_mb=512)
    assert str(sandboxed.value) == str(in_process.value)
    with pytest.raises(RenderError, match=r"too many pages: 2 \(limit 1\)"):
        render_sandboxed(
            [b"a\n", b"b\n"], Resolution.FINE, max_pages=1, timeout_s=30, memory_mb=512
        )


def test_memory_limit_refuses_a_big_image() -> None:
    # 72 megapixels passes the pixel-count check but needs far more than 40 MB to decode.
    with pytest.raises(RenderError, match=r"^rendering needed more than 40 MB$"):
        render_sandboxed([big_png(8000, 9000)], Resolution.FINE, timeout_s=60, memory_mb=40)


def test_decompression_bomb_pdf_is_refused_or_rendered_within_limits() -> None:
    # A 14400 x 14400 pt page (the PDF maximum) carrying a 20000 x 20000 pixel image that
    # claims 400 MB at 8 bits: it must either render inside a 256 MB budget (PDFium scales
    # while decoding) or be refused for memory, never take anything else down.
    bomb = make_pdf(page=(14400, 14400), image=(20000, 20000))
    assert len(bomb) < 200_000
    try:
        pages = render_sandboxed([bomb], Resolution.FINE, timeout_s=60, memory_mb=256)
    except RenderError as exc:
        assert str(exc) == "rendering needed more than 256 MB"
    else:
        assert len(pages) == 1
        assert pages[0].startswith(b"II*\x00")


def test_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(RenderError, match=r"image too large \(10000x10000 pixels\)"):
        render_sandboxed([big_png(10000, 10000)], Resolution.FINE, timeout_s=60, memory_mb=64)


def test_timeout() -> None:
    with pytest.raises(RenderError, match=r"^rendering took longer than 0\.05 s$"):
        render_sandboxed([make_pdf()], Resolution.FINE, timeout_s=0.05, memory_mb=512)


def test_a_crash_is_reported_with_its_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    # A child that dies from a signal: make the interpreter itself abort at start-up by
    # pointing it at a program that kills itself (a real process and a real signal).
    import workers.render.sandbox as sandbox

    monkeypatch.setattr(
        sandbox, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    )
    with pytest.raises(RenderError, match=rf"^the renderer crashed \(signal {signal.SIGSEGV}\)$"):
        render_sandboxed([b"x\n"], Resolution.FINE, timeout_s=30, memory_mb=512)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        render_sandboxed([b"x\n"], Resolution.FINE, timeout_s=0, memory_mb=512)
    with pytest.raises(ValueError, match="memory_mb"):
        render_sandboxed([b"x\n"], Resolution.FINE, timeout_s=1, memory_mb=0)


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.render_timeout_seconds == 120
    assert settings.render_memory_mb == 1024


def _children() -> set[str]:
    mine = str(os.getpid())
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == mine:  # the parent pid, even for a zombie
            found.add(pid)
    return found


def test_no_child_is_left_behind() -> None:
    before = _children()
    with pytest.raises(RenderError):
        render_sandboxed([make_pdf()], Resolution.FINE, timeout_s=0.05, memory_mb=512)
    assert _children() - before == set()
