"""Render in a limited process, forked from a warm one, with limits on time and memory.

``render_sandboxed`` runs :func:`.pipeline.render_documents` in a process of its own whose
address space (``RLIMIT_AS``) and CPU time (``RLIMIT_CPU``) are capped, with a wall-clock
deadline on top. Whatever a document does to PDFium or Pillow in there (a decompression
bomb, an endless loop, a segfault), the worker gets either the pages or a
:class:`RenderError` that names the cause:

- "rendering took longer than N s"
- "rendering needed more than N MB"
- "the renderer crashed (signal N)"

Why a warm process: starting Python and loading PDFium, Pillow and libtiff takes longer
than rendering a typical one-page fax. So each worker process starts one *zygote* (a fresh
interpreter, ``subprocess``, not a fork of the worker: nothing of the worker's state,
threads or sockets is shared) that loads the renderer once and then waits. Each job is a
``fork`` of the zygote: a copy of a process that has loaded everything and rendered
nothing, which sets its limits, renders one job, answers and exits. The job process is
thrown away, so one document cannot leave anything behind for the next; the zygote itself
never touches a document (it forwards the job's bytes unopened) and never grows.

Who talks to whom:

- worker -> zygote, on a Unix socket: the job (a pickle: worker to renderer only) with the
  write end of a fresh pipe passed alongside (``SCM_RIGHTS``), or "kill the running job".
- job -> worker, on that pipe: the pages as a plain length-prefixed frame, so a job
  subverted by a document cannot make the worker unpickle anything.
- zygote -> worker, on the socket: how the job process ended (its exit status, read with a
  pidfd so a kill can never hit a recycled pid) and the tail of its stderr.

If the zygote itself dies, the job fails with "the renderer crashed (no answer)" and the
next job starts a new one.

Office documents are converted to PDF first, in this process, by LibreOffice (itself a
separate process with its own deadline; see :mod:`.office`).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faxfleet.documents import UnsupportedDocument, detect_type
from faxfleet.kinds import Resolution

from . import office
from .errors import RenderError

_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding ``workers``
_ZYGOTE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from workers.render.sandbox import _zygote_main; _zygote_main(int(sys.argv[2]))"
)
_OK, _FAILED, _NO_MEMORY = b"K", b"E", b"M"
_JOB, _KILL, _READY, _ENDED = b"J", b"X", b"R", b"S"
_U32 = struct.Struct(">I")
_ENDED_HEAD = struct.Struct(">iI")  # exit code (negative: signal), stderr bytes
_MAX_STDERR = 2000
_START_TIMEOUT_S = 60.0
"""How long ``WarmRenderer.start`` waits for the renderer to load."""
_KILL_GRACE_S = 10.0


def render_sandboxed(
    documents: Sequence[bytes],
    resolution: Resolution,
    *,
    max_pages: int = 500,
    timeout_s: float = 120,
    memory_mb: int = 1024,
    processes: int | None = None,
    **kwargs: Any,
) -> list[bytes]:
    """:func:`render_documents` in a limited process; same result, same errors.

    ``timeout_s`` bounds the whole job (Office conversion included) in wall-clock time and
    the job's CPU time; ``memory_mb`` is the address space the job may grow by beyond the
    loaded renderer. A job of 4 pages or more is drawn by two processes when ``processes``
    is 2 or more (default: when the machine has two cores or more), within those same
    limits and with the same errors (see :mod:`.split`); 1 keeps every job in one process.
    ``kwargs`` go to ``render_documents`` unchanged.
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
            processes,
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    return warm_renderer().run(job, deadline, timeout_s, memory_mb)


_shared: WarmRenderer | None = None
_shared_lock = threading.Lock()


def warm_renderer() -> WarmRenderer:
    """This process's renderer, started on first use (and again in a forked worker)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.owner != os.getpid():
            _shared = WarmRenderer()
        return _shared


class WarmRenderer:
    """One zygote and the jobs forked from it, one job at a time."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._ready = False

    @property
    def pid(self) -> int | None:
        """The zygote's pid once started."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = _START_TIMEOUT_S) -> bool:
        """Start the zygote now (a worker does this before its first job); whether it was
        ready within ``timeout_s``."""
        with self._lock:
            return self._ensure_started(time.monotonic() + timeout_s)

    def close(self) -> None:
        """Stop the zygote (it would also stop by itself when this process exits)."""
        with self._lock:
            self._stop()

    def run(self, job: bytes, deadline: float, timeout_s: float, memory_mb: int) -> list[bytes]:
        """Render one pickled job in a fresh fork of the zygote."""
        too_slow = f"rendering took longer than {timeout_s:g} s"
        with self._lock:
            if not self._ensure_started(deadline):
                raise RenderError(too_slow)
            read_end, write_end = os.pipe()
            try:
                try:
                    assert self._socket is not None
                    socket.send_fds(self._socket, [_JOB + _U32.pack(len(job))], [write_end])
                    os.close(write_end)
                    write_end = -1
                    self._socket.sendall(job)
                except OSError:
                    self._stop()
                    raise RenderError("the renderer crashed (no answer)") from None
                out, code, err = self._collect(read_end, deadline)
            finally:
                os.close(read_end)
                if write_end >= 0:
                    os.close(write_end)
        if code is None:
            raise RenderError(too_slow)
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

    def _collect(self, answer: int, deadline: float) -> tuple[bytes, int | None, bytes]:
        """The job's answer, exit code (None: killed at the deadline) and stderr tail."""
        assert self._socket is not None
        sock = self._socket
        chunks: list[bytes] = []
        pending = b""
        ended: tuple[int, bytes] | None = None
        answer_open, killed = True, False
        while answer_open or ended is None:
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                with contextlib.suppress(OSError):
                    sock.sendall(_KILL)
                killed, deadline = True, time.monotonic() + _KILL_GRACE_S
                continue
            if left <= 0:  # the zygote did not answer the kill: start afresh next time
                self._stop()
                return b"", None, b""
            watch = [sock, answer] if answer_open else [sock]
            ready, _, _ = select.select(watch, [], [], left)
            if answer in ready and answer_open:
                data = os.read(answer, 1 << 20)
                if data:
                    chunks.append(data)
                else:
                    answer_open = False
            if sock in ready:
                data = sock.recv(1 << 16)
                if not data:
                    self._stop()
                    raise RenderError("the renderer crashed (no answer)")
                pending += data
                ended, pending = _parse_ended(pending)
        if killed:
            return b"", None, b""
        assert ended is not None
        return b"".join(chunks), ended[0], ended[1]

    def _ensure_started(self, deadline: float) -> bool:
        """Whether the zygote is ready; False when ``deadline`` came first (it keeps
        starting, for the next job)."""
        if self._process is not None and self._process.poll() is not None:
            self._stop()
        if self._process is None:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", _ZYGOTE, _ROOT, str(child_end.fileno())],
                    stdin=subprocess.DEVNULL,
                    pass_fds=[child_end.fileno()],
                    start_new_session=True,
                )
            finally:
                child_end.close()
            self._socket, self._ready = parent_end, False
        if self._ready:
            return True
        assert self._socket is not None
        ready, _, _ = select.select([self._socket], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        if self._socket.recv(1) != _READY:
            self._stop()
            raise RenderError("the renderer crashed (no answer)")
        self._ready = True
        return True

    def _stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None


def _parse_ended(pending: bytes) -> tuple[tuple[int, bytes] | None, bytes]:
    """One "job ended" message from the front of ``pending``, if it is all there."""
    head = 1 + _ENDED_HEAD.size
    if len(pending) < head:
        return None, pending
    if pending[:1] != _ENDED:
        raise RenderError("the renderer crashed (garbled answer)")
    code, size = _ENDED_HEAD.unpack_from(pending, 1)
    if len(pending) < head + size:
        return None, pending
    return (code, pending[head : head + size]), pending[head + size :]


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


# --- the zygote and its jobs ------------------------------------------------------------------


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _zygote_main(fd: int) -> None:
    """Load the renderer, then hand each job to a spare forked from us until the worker
    goes away."""
    import gc

    _name_process(b"render-zygote")
    _warm_up()
    gc.freeze()  # the jobs' collector leaves the loaded renderer's pages shared, uncopied
    sock = socket.socket(fileno=fd)
    spare = _Spare(sock)
    sock.sendall(_READY)
    try:
        while True:
            head, fds, _, _ = socket.recv_fds(sock, 1 + _U32.size, 1)
            if not head:
                return  # the worker closed the socket: it is gone or done with us
            head = head.lstrip(_KILL)  # a kill that crossed the end of its job
            if not head:
                for extra in fds:
                    os.close(extra)
                continue
            head += _read_exact(sock, 1 + _U32.size - len(head))
            if head[:1] != _JOB or len(fds) != 1:
                return
            job = _read_exact(sock, _U32.unpack_from(head, 1)[0])
            spare = _run_one(sock, job, fds[0], spare)
    except (EOFError, ConnectionError):
        return
    finally:
        spare.discard()


_PR_SET_PDEATHSIG = 1


def _name_process(name: bytes) -> None:
    """Set the name ``ps`` and /proc/PID/comm show (Linux ``PR_SET_NAME``)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)


class _Spare:
    """A process forked from the zygote ahead of time, waiting for the next job.

    The fork happens while the worker is idle (right after the previous job), not while a
    fax waits. It becomes the job process when the job arrives; a new spare is forked
    after each job. A spare is never given a second job: whatever a document does to a
    job process, the next fax starts from the zygote's clean state again.
    """

    def __init__(self, worker: socket.socket) -> None:
        self.stderr = os.memfd_create("render-stderr", os.MFD_CLOEXEC)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            worker.close()
            self.control.close()
            os.dup2(self.stderr, 2)
            _spare_main(theirs)  # never returns
        theirs.close()
        self.pidfd = os.pidfd_open(self.pid)

    def hand_over(self, job: bytes, answer: int) -> bool:
        """Give the job to this spare; False if it is gone (it died while waiting)."""
        try:
            socket.send_fds(self.control, [_JOB + _U32.pack(len(job))], [answer])
            self.control.sendall(job)
        except OSError:
            return False
        self.control.close()
        return True

    def discard(self) -> None:
        """Kill and reap a spare that will not get a job (or whose job is abandoned)."""
        self.control.close()
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self.close()

    def close(self) -> None:
        """Release our handles on it (it has been reaped, or is being discarded)."""
        for fd in (self.pidfd, self.stderr):
            if fd >= 0:
                os.close(fd)
        self.pidfd = self.stderr = -1


def _spare_main(control: socket.socket) -> None:
    """In a spare: get ready, wait for one job, become its job process."""
    import ctypes

    _name_process(b"render-spare")
    with contextlib.suppress(OSError, AttributeError):  # die with the zygote (Linux)
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    base = _vm_size_bytes()  # the limit counts from the renderer as loaded
    try:
        head, fds, _, _ = socket.recv_fds(control, 1 + _U32.size, 1)
        if len(head) < 1 + _U32.size:
            head += _read_exact(control, 1 + _U32.size - len(head))
        if head[:1] != _JOB or len(fds) != 1:
            os._exit(0)
        job = _read_exact(control, _U32.unpack_from(head, 1)[0])
    except (EOFError, OSError):
        os._exit(0)  # the zygote is gone: so are we
    control.close()
    _name_process(b"render-job")
    _job_main(job, fds[0], base)  # never returns


_WARM_UP_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R"
    b"/Resources<</Font<</F1<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>>>>>>>endobj\n"
    b"4 0 obj<</Length 44>>stream\nBT /F1 12 Tf 72 720 Td (Warm up) Tj ET\nendstream endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _warm_up() -> None:
    """Render one page of each kind at each resolution, and code one in every coding.

    Everything a first page loads (PDFium's fonts, the text font, the halftone screens,
    libtiff's codecs, the ctypes prototypes and the modules a job imports) is then in the
    zygote, and every job forked from it starts with it loaded instead of loading it
    again. It costs a few tenths of a second of CPU, once per worker process.
    """
    import io

    from PIL import Image

    from faxfleet.kinds import Resolution

    from . import split  # noqa: F401  (what every job process imports, loaded once here)
    from .pipeline import Coding, render_documents, transcode

    picture = io.BytesIO()
    Image.radial_gradient("L").save(picture, format="PNG")  # mid-greys: a halftoned photo
    documents = [_WARM_UP_PDF, b"Warm up\n", picture.getvalue()]
    for resolution in Resolution:
        with contextlib.suppress(RenderError):  # partly warm is still correct
            first, *_ = render_documents(documents, resolution)
            for coding in Coding:
                transcode(first, coding)


def _run_one(sock: socket.socket, job: bytes, answer: int, spare: _Spare) -> _Spare:
    """Run the job in ``spare``, wait for it (or kill it when asked), report how it ended,
    and return the next spare."""
    if not spare.hand_over(job, answer):
        spare.discard()
        spare = _Spare(sock)
        if not spare.hand_over(job, answer):  # a fresh spare that cannot take a job at all
            os.close(answer)
            raise EOFError
    os.close(answer)
    try:
        while True:
            ready, _, _ = select.select([sock, spare.pidfd], [], [])
            if spare.pidfd in ready:
                break
            if not sock.recv(1, socket.MSG_PEEK):
                spare.discard()
                raise EOFError
            if sock.recv(1) == _KILL:
                signal.pidfd_send_signal(spare.pidfd, signal.SIGKILL)
        _, status = os.waitpid(spare.pid, 0)
        size = os.fstat(spare.stderr).st_size
        tail = os.pread(spare.stderr, _MAX_STDERR * 4, max(0, size - _MAX_STDERR * 4))
    finally:
        spare.close()
    code = os.waitstatus_to_exitcode(status)
    sock.sendall(_ENDED + _ENDED_HEAD.pack(code, len(tail)) + tail)
    return _Spare(sock)


def _job_main(job: bytes, answer: int, base: int) -> None:
    """In the forked job process: limit ourselves, render, answer on the pipe, exit."""
    import resource
    import traceback

    status = 1
    try:
        from . import split
        from .pipeline import open_documents

        documents, resolution, kwargs, timeout_s, memory_mb, processes = pickle.loads(job)
        del job
        if processes is None:
            processes = min(2, split.cores())
        cpu = max(1, math.ceil(timeout_s))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))  # SIGXCPU, then SIGKILL
        growth = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (base + growth, base + growth))
        try:
            with open_documents(documents, resolution, **kwargs) as opened:
                pages = split.render(opened, processes, base, growth)
        except RenderError as exc:
            frame = [_FAILED + str(exc).encode("utf-8")]
        except MemoryError:
            frame = [_NO_MEMORY]
        else:
            frame = [_OK, _U32.pack(len(pages))]
            for page in pages:
                frame += [_U32.pack(len(page)), page]
            del pages
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
