"""Render one long job on two cores: the job process forks a helper for every other page.

Used inside a sandboxed job process (:mod:`.sandbox`), after its limits are set. It keeps
the job's limits and errors exactly what they are when one process renders the job:

- **Pages and numbering**: the job process draws pages 0, 2, 4, ... and the helper pages
  1, 3, 5, ...; they are interleaved back, so the result is byte for byte the same.
- **Errors**: each process stops at its first failing page; the failure with the lower
  page number is reported, which is the one a single process would have met first.
- **Memory**: the job may grow by ``memory_mb`` in all. Each process may grow by half of
  it; if either runs out, the job process takes its own limit back to the whole
  ``memory_mb`` and renders every page alone, so a job fails for memory only when one
  process with the whole budget cannot render it.
- **Time**: the wall-clock deadline is the worker's, over both processes; each process's
  CPU limit is the job's, and neither can use more CPU time than wall time.
- **Crashes**: if the helper dies from a signal, the job process kills itself with the same
  signal, so the worker reports it as it would have ("the renderer crashed (signal N)",
  or "took longer" for the CPU limit's signals). The helper dies with the job process
  (``PR_SET_PDEATHSIG``), so a job killed at its deadline leaves nothing running.

The helper answers on a pipe with a plain frame, as the job process answers the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import struct
import sys
import time
import traceback

from .errors import RenderError
from .pipeline import OpenedJob

SPLIT_MIN_PAGES = 4
"""Jobs shorter than this render in one process: a fork costs more than it saves."""

_PAGES, _FAILED, _NO_MEMORY = b"P", b"E", b"M"
_U32 = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def render(job: OpenedJob, processes: int, base: int, memory_bytes: int) -> list[bytes]:
    """All of ``job``'s pages, on two processes when ``processes`` allows and it pays.

    ``base`` is the address space the job process had when its limit was set, and
    ``memory_bytes`` how much it may grow by (its RLIMIT_AS is ``base + memory_bytes``).
    """
    if processes < 2 or job.total < SPLIT_MIN_PAGES:
        return job.render()
    half = base + memory_bytes // 2
    whole = base + memory_bytes
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _helper(job, write_end, half, parent)  # never returns
    os.close(write_end)
    resource.setrlimit(resource.RLIMIT_AS, (half, whole))  # hard stays: we may take it back
    mine: list[bytes] | RenderError | MemoryError
    try:
        mine = job.render((0, 2))
    except RenderError as exc:
        mine = exc
    except MemoryError as exc:
        mine = exc
    answer = _read_all(read_end)
    _, status = os.waitpid(pid, 0)
    resource.setrlimit(resource.RLIMIT_AS, (whole, whole))
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        _die_like(-code)
    if code > 0:  # the helper printed its traceback on our shared stderr
        sys.stderr.flush()
        os._exit(code)
    theirs = _parse(answer)
    if isinstance(mine, MemoryError) or isinstance(theirs, MemoryError):
        del mine, theirs
        return job.render()  # alone, with the whole memory budget
    failures = [result for result in (mine, theirs) if isinstance(result, RenderError)]
    if failures:
        raise min(failures, key=lambda failure: failure.page or 0)
    assert isinstance(mine, list) and isinstance(theirs, list)
    pages: list[bytes] = []
    for number in range(job.total):
        pages.append((mine if number % 2 == 0 else theirs)[number // 2])
    return pages


def _helper(job: OpenedJob, answer: int, limit: int, parent: int) -> None:
    """In the helper: die with the job process, limit ourselves, render the odd pages."""
    status = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(b"render-helper"), 0, 0, 0)
        if os.getppid() != parent:  # the job process died before we could ask
            os._exit(1)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            pages = job.render((1, 2))
        except RenderError as exc:
            frame = [_FAILED, _U32.pack(exc.page or 0), str(exc).encode("utf-8")]
        except MemoryError:
            frame = [_NO_MEMORY]
        else:
            frame = [_PAGES, _U32.pack(len(pages))]
            for page in pages:
                frame += [_U32.pack(len(page)), page]
        with open(answer, "wb", closefd=True) as out:
            for part in frame:
                out.write(part)
        status = 0
    except BaseException:
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(1)
    os._exit(status)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _parse(answer: bytes) -> list[bytes] | RenderError | MemoryError:
    kind = answer[:1]
    if kind == _NO_MEMORY:
        return MemoryError()
    if kind == _FAILED:
        failure = RenderError(answer[1 + _U32.size :].decode("utf-8", "replace"))
        failure.page = _U32.unpack_from(answer, 1)[0]
        return failure
    if kind != _PAGES:
        raise RenderError("the renderer crashed (no answer)")
    (count,) = _U32.unpack_from(answer, 1)
    offset = 1 + _U32.size
    pages = []
    for _ in range(count):
        (size,) = _U32.unpack_from(answer, offset)
        offset += _U32.size
        pages.append(answer[offset : offset + size])
        offset += size
    return pages


def _die_like(signum: int) -> None:
    """End this process with ``signum``, as the helper ended."""
    with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(1)  # a blocked or ignored signal: fall back to a plain failure
    os._exit(1)
