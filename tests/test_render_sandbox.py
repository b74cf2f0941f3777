"""The sandboxed renderer: same pages as in-process, and specific errors at its limits.

Every case runs a real child process with real ``RLIMIT_AS`` / ``RLIMIT_CPU`` limits.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from faxfleet.messages import Resolution
from faxfleet.settings import Settings
from tests.pdfgen import assemble_pdf
from workers.render import RenderError, render_documents
from workers.render.sandbox import render_sandboxed, warm_renderer


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


_SLOW = b"line\n" * 60 * 100
"""100 text pages: far more than 0.05 s of work, even in a warm renderer."""


def test_timeout() -> None:
    with pytest.raises(RenderError, match=r"^rendering took longer than 0\.05 s$"):
        render_sandboxed([_SLOW], Resolution.FINE, timeout_s=0.05, memory_mb=512)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        render_sandboxed([b"x\n"], Resolution.FINE, timeout_s=0, memory_mb=512)
    with pytest.raises(ValueError, match="memory_mb"):
        render_sandboxed([b"x\n"], Resolution.FINE, timeout_s=1, memory_mb=0)


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.render_timeout_seconds == 120
    assert settings.render_memory_mb == 1024


ROOT = Path(__file__).resolve().parents[1]


def _children(parent: int | None = None, name: str | None = None) -> set[int]:
    """Pids whose parent is ``parent`` (default: this process), zombies included; only
    those called ``name`` (render-job, render-spare) when given."""
    mine = str(os.getpid() if parent is None else parent)
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                comm, rest = stat.read().rsplit(")", 1)
        except OSError:
            continue
        if rest.split()[1] == mine and (name is None or comm.split("(", 1)[1] == name):
            found.add(int(pid))
    return found


def _only_a_spare(zygote: int) -> bool:
    """The zygote's one child is the spare waiting for the next job (or it is being forked)."""
    children = _children(zygote)
    return len(children) <= 1 and not _children(zygote, "render-job")


def _zygote() -> int:
    renderer = warm_renderer()
    assert renderer.start()
    assert renderer.pid is not None
    return renderer.pid


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _renders_fine() -> None:
    [page] = render_sandboxed([b"still here\n"], Resolution.STANDARD, timeout_s=30, memory_mb=512)
    assert page.startswith(b"II*\x00")


def test_no_child_is_left_behind() -> None:
    zygote = _zygote()
    before = _children()
    with pytest.raises(RenderError):
        render_sandboxed([_SLOW], Resolution.FINE, timeout_s=0.05, memory_mb=512)
    assert _children() - before == set()
    assert _only_a_spare(zygote)  # the job process was killed and reaped


def _wait_for_job(zygote: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = _children(zygote, "render-job")
        if jobs:
            return jobs.pop()
        time.sleep(0.005)
    raise AssertionError("no job process appeared")


def test_a_crashing_job_fails_alone_and_the_next_job_renders() -> None:
    zygote = _zygote()
    long_text = b"a line of text\n" * 60 * 300  # 300 pages: seconds of work, time to crash it
    errors: list[RenderError] = []

    def run() -> None:
        try:
            render_sandboxed([long_text], Resolution.FINE, timeout_s=60, memory_mb=1024)
        except RenderError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    os.kill(_wait_for_job(zygote), signal.SIGSEGV)  # a real segfault signal in the job
    thread.join(60)
    assert [str(e) for e in errors] == [f"the renderer crashed (signal {signal.SIGSEGV})"]
    _renders_fine()
    assert warm_renderer().pid == zygote  # the zygote never noticed


def test_jobs_over_the_memory_or_time_limit_fail_alone() -> None:
    zygote = _zygote()
    with pytest.raises(RenderError, match=r"^rendering needed more than 40 MB$"):
        render_sandboxed([big_png(8000, 9000)], Resolution.FINE, timeout_s=60, memory_mb=40)
    _renders_fine()
    with pytest.raises(RenderError, match=r"^rendering took longer than 0\.2 s$"):
        render_sandboxed([b"x\n" * 20000], Resolution.FINE, timeout_s=0.2, memory_mb=512)
    _renders_fine()
    assert warm_renderer().pid == zygote


def test_a_dead_zygote_is_replaced_by_the_next_job() -> None:
    zygote = _zygote()
    os.kill(zygote, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _status_state(zygote) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.01)
    _renders_fine()
    assert warm_renderer().pid not in (None, zygote)


def _status_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_many_jobs_leave_no_growth_behind() -> None:
    zygote = _zygote()
    _renders_fine()
    rss, fds = _status(zygote, "VmRSS"), len(os.listdir("/proc/self/fd"))
    for number in range(40):
        docs = [make_pdf(), f"job {number}\n".encode()]
        assert len(render_sandboxed(docs, Resolution.FINE, timeout_s=30, memory_mb=512)) == 2
    assert warm_renderer().pid == zygote
    assert _only_a_spare(zygote)
    assert len(os.listdir("/proc/self/fd")) == fds  # no pipe or socket leaks here
    assert _status(zygote, "VmRSS") <= rss + 2048  # KiB: the zygote does not grow


def test_a_warm_job_costs_less_than_starting_the_renderer() -> None:
    """The point of the zygote: a job is a fork, not a new interpreter loading PDFium."""
    _zygote()
    _renders_fine()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import workers.render.pipeline"], cwd=ROOT, check=True)
    cold_start = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(5):
        _renders_fine()
    assert (time.perf_counter() - started) / 5 < cold_start
