"""Rendering benchmark: faxfleet (PDFium + libtiff) against Ghostscript on one corpus, one run.

Why this shape: a render worker handles one fax at a time, mostly of one to three pages,
so per-job cost (process start, font loading) matters as much as raw page speed. 1-page
jobs are timed per job: Ghostscript as a fresh process per job (as fax servers run it),
faxfleet through ``render_sandboxed`` (the headline: the warm, forked, limited job process
the render worker really uses) and in-process (``render_documents``, to show what the
sandbox costs). 50-page jobs show steady-state speed.

The corpus is generated here (reportlab, Pillow): a text letter, a table-heavy invoice, a
"scanned" page (text drawn, rotated 0.7 degrees, noised, embedded as an image) and a
synthetic photograph; "mixed" is all four. Every document is a PDF so both renderers read
the same input.

Run: ``.venv/bin/python bench/render_bench.py [--quick]``
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import io
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faxfleet.messages import Resolution  # noqa: E402
from workers.render.bitmap import FAX_WIDTH_PX, fitted_size  # noqa: E402
from workers.render.coding import Coding  # noqa: E402
from workers.render.pipeline import render_documents  # noqa: E402
from workers.render.sandbox import render_sandboxed, warm_renderer  # noqa: E402

GS_DEVICE = {Coding.MH: "tiffg3", Coding.MR: "tiffg32d", Coding.MMR: "tiffg4"}
GS_RES = {Resolution.STANDARD: "-r204x98", Resolution.FINE: "-r204x196"}
LINE_BPS = 14_400
KINDS = ("letter", "invoice", "scanned", "photo")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


# --- corpus -------------------------------------------------------------------------------


def _letter(pdf: canvas.Canvas) -> None:
    rng = random.Random(1)
    words = [
        "account",
        "payment",
        "invoice",
        "delivery",
        "schedule",
        "contract",
        "please",
        "regards",
        "order",
    ]
    pdf.setFont("Helvetica-Bold", 14)
    pdf.drawString(60, 780, "ACME Supplies Ltd - 12 Market Street - Springfield")
    pdf.setFont("Times-Roman", 11)
    for line in range(48):
        text = " ".join(rng.choice(words) for _ in range(13))
        pdf.drawString(60, 740 - 14 * line, text.capitalize() + ".")


def _invoice(pdf: canvas.Canvas) -> None:
    pdf.setFont("Helvetica-Bold", 18)
    pdf.drawString(60, 780, "INVOICE 2026-1142")
    pdf.setFont("Helvetica", 9)
    for row in range(36):
        y = 740 - 18 * row
        for col, x in enumerate((60, 110, 330, 400, 470)):
            pdf.rect(x, y - 4, (50, 220, 70, 70, 65)[col], 18, stroke=1, fill=row == 0)
            label = ("#", "Item", "Qty", "Unit", "Total")[col] if row == 0 else f"{row * col:>6}"
            pdf.drawString(x + 3, y + 2, label if col != 1 else f"Part number {row:04d}-X")
    pdf.setLineWidth(2)
    pdf.line(60, 60, 535, 60)


def _scanned_image() -> Image.Image:
    page = Image.new("L", (1240, 1754), 246)  # 150 dpi A4, off-white paper
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 22)
    rng = random.Random(2)
    for line in range(52):
        draw.text(
            (110, 120 + 30 * line),
            f"Ref {rng.randint(1000, 9999)} received as agreed, signed and returned to the sender.",
            font=font,
            fill=30,
        )
    page = page.rotate(0.7, resample=Image.Resampling.BILINEAR, fillcolor=246)
    noise = Image.effect_noise(page.size, 18)
    return Image.blend(page, noise, 0.15).filter(ImageFilter.GaussianBlur(0.6))


def _photo_image() -> Image.Image:
    size = (1000, 1400)
    base = Image.radial_gradient("L").resize(size)
    waves = Image.linear_gradient("L").rotate(30, expand=False).resize(size)
    photo = Image.blend(base, waves, 0.5).filter(ImageFilter.GaussianBlur(8))
    return Image.blend(photo, Image.effect_noise(size, 30), 0.1)


def _image_page(pdf: canvas.Canvas, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    buffer.seek(0)
    pdf.drawImage(ImageReader(buffer), 30, 30, width=A4[0] - 60, height=A4[1] - 60)


def make_pdf(kinds: list[str]) -> bytes:
    """A PDF with one page per entry of ``kinds``."""
    images = {"scanned": _scanned_image(), "photo": _photo_image()}
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    for kind in kinds:
        if kind == "letter":
            _letter(pdf)
        elif kind == "invoice":
            _invoice(pdf)
        else:
            _image_page(pdf, images[kind])
        pdf.showPage()
    pdf.save()
    return out.getvalue()


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    pages: int
    bytes: int
    cpu: float = 0.0
    """CPU seconds of every process that rendered (user + system)."""

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds

    @property
    def kb_per_page(self) -> float:
        return self.bytes / self.pages / 1024


def _cpu_seconds() -> float:
    """CPU time of this process, its reaped children (gs) and the render zygote's reaped
    children (the job processes and their helpers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    zygote = warm_renderer().pid
    if zygote is not None:
        with open(f"/proc/{zygote}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return total


def _timed(job: Callable[[], int], pages: int) -> Result:
    cpu = _cpu_seconds()
    started = time.perf_counter()
    size = job()
    return Result(time.perf_counter() - started, pages, size, _cpu_seconds() - cpu)


def faxfleet_in_process(pdf: bytes, pages: int, res: Resolution, coding: Coding) -> Result:
    return _timed(lambda: sum(map(len, render_documents([pdf], res, coding=coding))), pages)


def faxfleet_sandboxed(pdf: bytes, pages: int, res: Resolution, coding: Coding) -> Result:
    def job() -> int:
        return sum(map(len, render_sandboxed([pdf], res, coding=coding, timeout_s=300)))

    return _timed(job, pages)


def pdfium_raster_only(pdf: bytes, pages: int, res: Resolution, coding: Coding) -> Result:
    """Only what any PDFium-based renderer must do: open the PDF and rasterise each page,
    in grey, at the fax page's pixel size, in this process. No bilevel step, no coding, no
    sandbox: its pages/s is the ceiling of faxfleet's own (``coding`` is unused)."""

    def job() -> int:
        document = pdfium.PdfDocument(pdf)
        try:
            for page in document:
                width, height = page.get_size()
                across, rows = fitted_size(width / 72, height / 72, res)
                bitmap = pdfium.PdfBitmap.new_native(
                    FAX_WIDTH_PX, rows, format=pdfium_c.FPDFBitmap_Gray
                )
                bitmap.fill_rect((255, 255, 255, 255), 0, 0, FAX_WIDTH_PX, rows)
                place = ((FAX_WIDTH_PX - across) // 2, 0, across, rows, 0)
                pdfium_c.FPDF_RenderPageBitmap(bitmap, page, *place, pdfium_c.FPDF_ANNOT)
                bitmap.close()
                page.close()
        finally:
            document.close()
        return 0

    return _timed(job, pages)


def ghostscript(path: Path, pages: int, res: Resolution, coding: Coding, out: Path) -> Result:
    command = [
        "gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", f"-sDEVICE={GS_DEVICE[coding]}",
        GS_RES[res], f"-sOutputFile={out}", str(path),
    ]  # fmt: skip

    def job() -> int:
        subprocess.run(command, check=True, capture_output=True)
        return out.stat().st_size

    return _timed(job, pages)


def _total(results: list[Result]) -> Result:
    return Result(
        sum(r.seconds for r in results),
        sum(r.pages for r in results),
        sum(r.bytes for r in results),
        sum(r.cpu for r in results),
    )


def _best_run(run: Callable[[], Result], repeats: int) -> Result:
    """The fastest of ``repeats`` runs: on a machine shared with other work, the minimum is
    the figure that repeats (others' load only ever adds time), for both renderers alike."""
    return min((run() for _ in range(repeats)), key=lambda r: r.seconds)


def _load() -> str:
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def machine() -> str:
    """What the figures were measured on."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gs = subprocess.run(["gs", "--version"], capture_output=True, text=True).stdout.strip()
    libtiff = ctypes.CDLL(ctypes.util.find_library("tiff") or "libtiff.so.6")
    libtiff.TIFFGetVersion.restype = ctypes.c_char_p
    tiff = libtiff.TIFFGetVersion().decode().splitlines()[0].replace("LIBTIFF, Version ", "")
    import PIL
    import pypdfium2

    return (
        f"machine: nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}, "
        f"Ghostscript {gs}, libtiff {tiff}, PDFium {pypdfium2.PDFIUM_INFO.build}, "
        f"Pillow {PIL.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MMR only for 50-page jobs")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="render-bench-"))
    singles = {kind: make_pdf([kind]) for kind in KINDS}
    for kind, data in singles.items():
        (work / f"{kind}.pdf").write_bytes(data)
    long_job = make_pdf([KINDS[i % 4] for i in range(50)])
    (work / "long.pdf").write_bytes(long_job)
    render_documents([singles["letter"]], Resolution.FINE)  # warm up (font, PDFium load)
    warm_renderer().start()  # as a render worker does when its pool process starts

    print(machine())
    print(f"started {_now()}, load average {_load()}")
    print(f"corpus: {', '.join(KINDS)} (1-page jobs); 50-page mixed job; repeats={repeats}")
    header = (
        f"{'res':8} {'coding':6} {'job':7} {'ff p/s':>8} {'in-pr p/s':>9} {'gs p/s':>8} "
        f"{'speed x':>8} {'in-pr x':>8} {'ff KB/p':>8} {'gs KB/p':>8} {'size':>6} "
        f"{'air s/p':>7} {'ff cpu':>7} {'gs cpu':>7} {'cpu x':>6} {'raster x':>8}"
    )
    print(header)
    for res in Resolution:
        for coding in Coding:
            ff, inproc, gs, raster = [], [], [], []
            for kind in KINDS:
                path = work / f"{kind}.pdf"
                ff.append(_best_run(partial(faxfleet_sandboxed, singles[kind], 1, res, coding), 5))
                inproc.append(
                    _best_run(partial(faxfleet_in_process, singles[kind], 1, res, coding), 5)
                )
                raster.append(
                    _best_run(partial(pdfium_raster_only, singles[kind], 1, res, coding), 5)
                )
                out = work / f"gs-{kind}.tif"
                gs.append(_best_run(partial(ghostscript, path, 1, res, coding, out), repeats))
            rows = [("1-page", _total(ff), _total(inproc), _total(gs), _total(raster))]
            if not args.quick or coding is Coding.MMR:
                long_ff = _best_run(partial(faxfleet_sandboxed, long_job, 50, res, coding), repeats)
                long_in = faxfleet_in_process(long_job, 50, res, coding)
                long_gs = _best_run(
                    partial(ghostscript, work / "long.pdf", 50, res, coding, work / "gs-long.tif"),
                    repeats,
                )
                long_raster = _best_run(
                    partial(pdfium_raster_only, long_job, 50, res, coding), repeats
                )
                rows.append(("50-page", long_ff, long_in, long_gs, long_raster))
            for job, f, i, g, r in rows:
                airtime = f.bytes * 8 / f.pages / LINE_BPS
                print(
                    f"{res.value:8} {coding.value:6} {job:7} {f.pages_per_s:8.1f} "
                    f"{i.pages_per_s:9.1f} {g.pages_per_s:8.1f} "
                    f"{f.pages_per_s / g.pages_per_s:8.2f} {i.pages_per_s / g.pages_per_s:8.2f} "
                    f"{f.kb_per_page:8.1f} {g.kb_per_page:8.1f} "
                    f"{f.bytes / g.bytes:6.2f} {airtime:7.1f} "
                    f"{f.cpu / f.pages * 1000:7.1f} {g.cpu / g.pages * 1000:7.1f} "
                    f"{g.cpu / f.cpu:6.2f} {r.pages_per_s / g.pages_per_s:8.2f}",
                    flush=True,
                )
    print(
        "ff = faxfleet as the render worker runs it (render_sandboxed: a job forked from the "
        "warm renderer,\nwith its limits); in-pr = render_documents in the calling process; "
        "speed x = ff pages/s / gs pages/s;\nsize = faxfleet bytes / gs bytes (TIFF files, "
        "mixed corpus); air s/p = faxfleet bits per page / 14,400 bit/s\n(T.30 handshake "
        "and the per-line minimum scan time ignored);\nff cpu, gs cpu = CPU ms per page of "
        "every process that rendered (the job processes, gs), cpu x = gs cpu / ff cpu:\n"
        "what a machine busy with other work can still compare;\nraster x = pages/s of "
        "PDFium's rasterising alone (open, draw grey at fax size, in-process: no bilevel, "
        "no coding,\nno sandbox) / gs pages/s: the ceiling of any renderer built on PDFium."
    )
    _per_kind(singles, work)
    _other_inputs()
    print(f"ended {_now()}, load average {_load()}")


def _per_kind(singles: dict[str, bytes], work: Path) -> None:
    """KB/page and ms/job per document kind: where size and time come from."""
    for res in Resolution:
        for coding in (Coding.MH, Coding.MMR):
            cells = []
            for kind, data in singles.items():
                ff = _best_run(partial(faxfleet_sandboxed, data, 1, res, coding), 5)
                out = work / f"gs-{kind}.tif"
                gs = ghostscript(work / f"{kind}.pdf", 1, res, coding, out)
                cells.append(
                    f"{kind} {ff.kb_per_page:.0f}/{gs.kb_per_page:.0f} KB "
                    f"{ff.seconds * 1000:.0f}/{gs.seconds * 1000:.0f} ms"
                )
            print(f"by kind, ff/gs, {res.value} {coding.value}: " + ", ".join(cells))


def other_inputs() -> dict[str, bytes]:
    """Documents that are not PDFs (Ghostscript does not read them): a 60-line text
    listing, and a 300 dpi A4 scan as a colour JPEG and as a 1-bit PNG."""
    lines = [
        f"{i:4d}  Part number {i * 37:06d}-X   widget, blue, boxed   qty {i % 9 + 1:3d}"
        f"   EUR {i * 3.5:8.2f}"
        for i in range(60)
    ]
    scan = _scanned_image().resize((2480, 3508))
    jpeg, png = io.BytesIO(), io.BytesIO()
    scan.convert("RGB").save(jpeg, format="JPEG", quality=85)
    scan.point(lambda v: 0 if v < 128 else 255).convert("1").save(png, format="PNG")
    return {
        "text listing": ("\n".join(lines) + "\n").encode(),
        "JPEG scan": jpeg.getvalue(),
        "1-bit PNG scan": png.getvalue(),
    }


def _other_inputs() -> None:
    """ms per 1-page job for inputs Ghostscript cannot read: faxfleet alone."""
    for name, data in other_inputs().items():
        cells = []
        for res in Resolution:
            ff = _best_run(partial(faxfleet_sandboxed, data, 1, res, Coding.MMR), 5)
            inproc = _best_run(partial(faxfleet_in_process, data, 1, res, Coding.MMR), 5)
            cells.append(
                f"{res.value} {ff.seconds * 1000:.0f} ms ({inproc.seconds * 1000:.0f} in-process)"
            )
        print(f"faxfleet only, MMR, {name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
