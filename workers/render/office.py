"""Office documents (.docx, .xlsx, .pptx, .odt, .ods, .odp) to PDF with LibreOffice.

LibreOffice runs headless, once per document, as its own process group with a private user
profile in a temporary directory: two conversions at once never share (and lock) a profile,
and a conversion that hangs is killed with everything it started. The PDF then goes down the
ordinary PDF path.

LibreOffice is optional on a worker; without it, Office documents fail with a message that
says what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from faxfleet.documents import DocumentType

from .errors import DocumentError, RenderError

NOT_INSTALLED = (
    "Office documents need LibreOffice, which is not installed on this worker "
    "(apt-get install libreoffice-writer libreoffice-calc)"
)

_SUFFIX = {
    DocumentType.DOCX: ".docx",
    DocumentType.XLSX: ".xlsx",
    DocumentType.PPTX: ".pptx",
    DocumentType.ODT: ".odt",
    DocumentType.ODS: ".ods",
    DocumentType.ODP: ".odp",
}

_MAX_DETAIL = 300  # characters of LibreOffice's own output quoted in an error


class OfficeError(RenderError, DocumentError):
    """An Office document that LibreOffice cannot (or is not there to) convert.

    Both a :class:`RenderError` (what callers catch) and a :class:`DocumentError` (so the
    pipeline prefixes "document N: " when it converts inside its reader loop).
    """


def soffice_path() -> str | None:
    """The LibreOffice executable on ``PATH``, if any."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def to_pdf(data: bytes, kind: DocumentType, timeout: float = 60) -> bytes:
    """Convert one Office document to PDF bytes, or raise :class:`OfficeError`."""
    suffix = _SUFFIX.get(DocumentType(kind))
    if suffix is None:
        raise ValueError(f"{kind} is not an Office document type")
    program = soffice_path()
    if program is None:
        raise OfficeError(NOT_INSTALLED)
    with tempfile.TemporaryDirectory(prefix="faxfleet-office-") as workdir:
        work = Path(workdir)
        source = work / f"document{suffix}"
        source.write_bytes(data)
        outdir = work / "out"
        outdir.mkdir()
        command = [
            program,
            f"-env:UserInstallation={(work / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            "pdf",
            "--outdir",
            str(outdir),
            str(source),
        ]
        env = dict(os.environ, HOME=str(work), SAL_USE_VCLPLUGIN="svp")
        output = _run(command, env, timeout)
        result = outdir / "document.pdf"
        if not result.is_file() or result.stat().st_size == 0:
            said = [line for line in output.splitlines() if not line.startswith("Warning:")]
            detail = " ".join(" ".join(said).split())[-_MAX_DETAIL:]
            raise OfficeError(
                "LibreOffice could not convert the Office document"
                + (f" ({detail})" if detail else "")
                + "; it may be damaged, password-protected or not really an Office document"
            )
        return result.read_bytes()


def _run(command: list[str], env: dict[str, str], timeout: float) -> str:
    """Run LibreOffice in its own session; return its combined output."""
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills soffice.bin too
        )
    except OSError as exc:  # vanished between which() and exec, or not executable
        raise OfficeError(f"{NOT_INSTALLED}: {exc.strerror}") from exc
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise OfficeError(
            f"converting the Office document took longer than {timeout:g} s"
        ) from None
    except BaseException:
        _kill_group(process)
        raise
    finally:
        _kill_group(process, only_children=True)
    text = out.decode("utf-8", "replace")
    if process.returncode < 0:
        raise OfficeError(
            f"LibreOffice crashed (signal {-process.returncode}) converting the Office document"
        )
    return text


def _kill_group(process: subprocess.Popen[bytes], *, only_children: bool = False) -> None:
    """Kill LibreOffice's process group (and reap it). With ``only_children``, just make sure
    nothing it started outlives a conversion that already finished."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if not only_children:
        process.communicate()
