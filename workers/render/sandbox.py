"""Render in a child process with limits on time and memory.

``render_sandboxed`` runs :func:`.pipeline.render_documents` in a fresh Python process
(``subprocess``, not ``fork``: nothing of the worker's state, threads or sockets is shared)
whose address space (``RLIMIT_AS``) and CPU time (``RLIMIT_CPU``) are capped, with a
wall-clock deadline on top. Whatever a document does to PDFium or Pillow in there (a
decompression bomb, an endless loop, a segfault), the worker gets either the pages or a
:class:`RenderError` that names the cause:

- "rendering took longer than N s"
- "rendering needed more than N MB"
- "the renderer crashed (signal N)"

Office documents are converted to PDF first, in this process, by LibreOffice (itself a
separate process with its own deadline; see :mod:`.office`).

The parent sends the job to the child as a pickle on stdin (parent to child only); the child
answers with a plain length-prefixed frame, so a child that was subverted by a document
cannot make the parent unpickle anything.
"""

from __future__ import annotations

import math
import pickle
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faxfleet.documents import UnsupportedDocument, detect_type
from faxfleet.kinds import Resolution

from . import office
from .errors import RenderError

_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding ``workers``
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from workers.render.sandbox import _child_main; _child_main()"
)
_OK, _FAILED, _NO_MEMORY = b"K", b"E", b"M"
_U32 = struct.Struct(">I")
_MAX_STDERR = 2000


def render_sandboxed(
    documents: Sequence[bytes],
    resolution: Resolution,
    *,
    max_pages: int = 500,
    timeout_s: float = 120,
    memory_mb: int = 1024,
    **kwargs: Any,
) -> list[bytes]:
    """:func:`render_documents` in a limited child process; same result, same errors.

    ``timeout_s`` bounds the whole job (Office conversion included) in wall-clock time and
    the child's CPU time; ``memory_mb`` is the address space the child may grow by once its
    libraries are loaded. ``kwargs`` go to ``render_documents`` unchanged.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if memory_mb < 1:
        raise ValueError(f"memory_mb must be at least 1, got {memory_mb}")
    deadline = time.monotonic() + timeout_s
    documents = _convert_office(documents, deadline, timeout_s)
    job = pickle.dumps(
        (
            [bytes(d) for d in documents],
            Resolution(resolution),
            {"max_pages": max_pages, **kwargs},
            timeout_s,
            memory_mb,
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    too_slow = f"rendering took longer than {timeout_s:g} s"
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, _ROOT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(job, timeout=max(0.001, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RenderError(too_slow) from None
    except BaseException:
        process.kill()
        process.communicate()
        raise
    code = process.returncode
    if code == 0:
        return _parse_answer(out, memory_mb)
    if _ran_out_of_memory(err):
        raise RenderError(f"rendering needed more than {memory_mb} MB")
    if code in (-signal.SIGXCPU, -signal.SIGKILL):  # RLIMIT_CPU: soft, then hard
        raise RenderError(too_slow)
    if code < 0:
        raise RenderError(f"the renderer crashed (signal {-code})")
    lines = err.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1][:_MAX_STDERR] if lines else "no output"
    raise RenderError(f"the renderer failed (exit status {code}): {last}")


def _convert_office(documents: Sequence[bytes], deadline: float, timeout_s: float) -> list[bytes]:
    converted: list[bytes] = []
    for number, data in enumerate(documents, start=1):
        try:
            kind = detect_type(bytes(data))
        except UnsupportedDocument:
            kind = None  # the renderer reports it, numbered, like any other bad document
        if kind is not None and kind.is_office:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RenderError(f"rendering took longer than {timeout_s:g} s")
            try:
                data = office.to_pdf(bytes(data), kind, timeout=left)
            except RenderError as exc:
                raise RenderError(f"document {number}: {exc}") from exc
        converted.append(bytes(data))
    return converted


def _ran_out_of_memory(stderr: bytes) -> bool:
    text = stderr[-_MAX_STDERR * 4 :]
    return any(
        marker in text
        for marker in (b"MemoryError", b"std::bad_alloc", b"Out of memory", b"out of memory")
    )


def _parse_answer(out: bytes, memory_mb: int) -> list[bytes]:
    if out[:1] == _NO_MEMORY:
        raise RenderError(f"rendering needed more than {memory_mb} MB")
    if out[:1] == _FAILED:
        raise RenderError(out[1:].decode("utf-8", "replace"))
    if out[:1] != _OK:
        raise RenderError("the renderer crashed (no answer)")
    try:
        (count,) = _U32.unpack_from(out, 1)
        offset = 1 + _U32.size
        pages: list[bytes] = []
        for _ in range(count):
            (size,) = _U32.unpack_from(out, offset)
            offset += _U32.size
            page = out[offset : offset + size]
            if len(page) != size:
                raise struct.error("short page")
            pages.append(page)
            offset += size
    except struct.error:
        raise RenderError("the renderer crashed (truncated answer)") from None
    return pages


def _vm_size_bytes() -> int:
    """This process's current address space (VmSize), 0 when unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _child_main() -> None:
    """The child: read the job, limit ourselves, render, answer on stdout."""
    import resource

    from .pipeline import render_documents  # loads PDFium and Pillow before the limit

    documents, resolution, kwargs, timeout_s, memory_mb = pickle.loads(sys.stdin.buffer.read())
    cpu = max(1, math.ceil(timeout_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))  # SIGXCPU, then SIGKILL
    limit = _vm_size_bytes() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout.buffer
    try:
        pages = render_documents(documents, resolution, **kwargs)
    except RenderError as exc:
        out.write(_FAILED + str(exc).encode("utf-8"))
    except MemoryError:
        out.write(_NO_MEMORY)
    else:
        frame = [_OK, _U32.pack(len(pages))]
        for page in pages:
            frame += [_U32.pack(len(page)), page]
        out.write(b"".join(frame))
    out.flush()
