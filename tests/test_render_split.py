"""A long job drawn on two processes: same pages, same errors, same limits as on one.

Every case runs real forked processes with real limits (see workers/render/split.py).
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest
from PIL import Image, ImageDraw

from faxfleet.messages import Resolution
from workers.render import RenderError, render_documents
from workers.render.coding import Coding
from workers.render.sandbox import render_sandboxed, warm_renderer


def text_pages(count: int, label: str) -> bytes:
    """``count`` full pages of text (60 dense lines each: ~15 ms a page at fine), so that
    a few hundred of them take seconds even on two processes."""
    line = "ABCDEFGHIJ0123456789" * 3
    return "\x0c".join(f"{label} page {n:03d} {line}\n" * 60 for n in range(count)).encode()


def picture(fmt: str = "PNG", size: tuple[int, int] = (600, 800)) -> bytes:
    image = Image.radial_gradient("L").resize(size)
    ImageDraw.Draw(image).text((20, 20), "picture", fill=0)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    whole = picture("JPEG")
    return whole[: len(whole) // 2]  # the header reads; the pixels fail to decode


def children(parent: int, name: str | None = None) -> set[int]:
    """Children of ``parent`` (zombies too), only those called ``name`` when given."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                comm, rest = stat.read().rsplit(")", 1)
        except OSError:
            continue
        if rest.split()[1] == str(parent) and (name is None or comm.split("(", 1)[1] == name):
            found.add(int(pid))
    return found


def wait_for_child(parent: int, name: str | None = None) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if found := children(parent, name):
            return found.pop()
        time.sleep(0.002)
    raise AssertionError(f"no child of {parent} appeared")


@pytest.mark.parametrize("coding", [Coding.MH, Coding.MMR])
def test_split_job_gives_the_same_bytes_as_one_process(coding: Coding) -> None:
    docs = [text_pages(3, "first"), picture(), text_pages(4, "second"), picture("JPEG")]
    alone = render_sandboxed(docs, Resolution.FINE, coding=coding, processes=1, timeout_s=60)
    split = render_sandboxed(docs, Resolution.FINE, coding=coding, processes=2, timeout_s=60)
    assert len(split) == 9
    assert split == alone == render_documents(docs, Resolution.FINE, coding=coding)


@pytest.mark.parametrize(
    "docs",
    [
        # first failure on an odd page (the helper's share), a later one on an even page
        [text_pages(3, "a"), truncated_jpeg(), text_pages(2, "b"), truncated_jpeg()],
        # first failure on an even page (the job process's share), a later one on an odd page
        [text_pages(2, "a"), truncated_jpeg(), text_pages(2, "b"), truncated_jpeg()],
    ],
)
def test_split_job_reports_the_first_failure_in_page_order(docs: list[bytes]) -> None:
    with pytest.raises(RenderError) as in_process:
        render_documents(docs, Resolution.STANDARD)
    with pytest.raises(RenderError) as split:
        render_sandboxed(docs, Resolution.STANDARD, processes=2, timeout_s=60)
    assert (
        str(split.value) == str(in_process.value) == "document 2: the image is corrupt or truncated"
    )


def test_memory_for_one_process_is_enough_for_a_split_job() -> None:
    # Find a budget just big enough for one process; half of it must be too small, so the
    # split job can only succeed by taking the whole budget back and rendering alone.
    docs = [picture(size=(5000, 5000))] * 4
    budgets = [48, 64, 96, 128, 192, 256, 384]
    enough = None
    for budget in budgets:
        try:
            alone = render_sandboxed(docs, Resolution.FINE, processes=1, memory_mb=budget)
        except RenderError as exc:
            assert str(exc) == f"rendering needed more than {budget} MB"
            continue
        enough = budget
        break
    assert enough is not None and enough > budgets[0]
    with pytest.raises(RenderError, match="needed more than"):
        render_sandboxed(docs, Resolution.FINE, processes=1, memory_mb=enough // 2)
    split = render_sandboxed(docs, Resolution.FINE, processes=2, memory_mb=enough)
    assert split == alone


def test_a_crashing_helper_fails_the_job_with_its_signal() -> None:
    renderer = warm_renderer()
    assert renderer.start() and renderer.pid is not None
    docs = [text_pages(200, "long")]
    errors: list[str] = []

    def run() -> None:
        try:
            render_sandboxed(docs, Resolution.FINE, processes=2, timeout_s=60)
        except RenderError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    job = wait_for_child(renderer.pid, "render-job")
    helper = wait_for_child(job)
    os.kill(helper, signal.SIGSEGV)
    thread.join(60)
    assert errors == [f"the renderer crashed (signal {signal.SIGSEGV})"]
    assert render_sandboxed([b"next\n"], Resolution.FINE, processes=2, timeout_s=30)


def test_a_split_job_killed_at_its_deadline_leaves_no_helper_running() -> None:
    """A job killed at its deadline takes its helper with it. On a busy machine the job
    may be killed before it forks its helper (laying out the 450 pages takes 2-5 s): then
    it is tried again with a longer deadline, still short of the whole render's time,
    until a helper was seen to start."""
    renderer = warm_renderer()
    assert renderer.start() and renderer.pid is not None
    found: list[int] = []
    for timeout_s in (3, 6, 9):

        def spot() -> None:
            job = wait_for_child(renderer.pid, "render-job")  # type: ignore[arg-type]
            while os.path.exists(f"/proc/{job}"):
                if helpers := children(job):
                    found.append(helpers.pop())
                    return
                time.sleep(0.002)

        watcher = threading.Thread(target=spot)
        watcher.start()
        with pytest.raises(RenderError, match=rf"^rendering took longer than {timeout_s} s$"):
            render_sandboxed(
                [text_pages(450, "x")],
                Resolution.FINE,
                processes=2,
                timeout_s=timeout_s,
            )
        watcher.join(30)
        if found:
            break
    [helper] = found
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{helper}") and time.monotonic() < deadline:
        time.sleep(0.01)  # a zombie is reaped by init at once
    assert not os.path.exists(f"/proc/{helper}")
    assert not children(renderer.pid, "render-job")
