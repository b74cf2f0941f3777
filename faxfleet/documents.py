"""What kind of document a byte string is, decided from its content, never its name.

The API refuses what no renderer can turn into pages before anything is queued; the
renderer uses the same answer to pick its path.
"""

from __future__ import annotations

import io
import zipfile
from enum import StrEnum


class DocumentType(StrEnum):
    PDF = "application/pdf"
    TEXT = "text/plain"
    PNG = "image/png"
    JPEG = "image/jpeg"
    TIFF = "image/tiff"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    ODT = "application/vnd.oasis.opendocument.text"
    ODS = "application/vnd.oasis.opendocument.spreadsheet"
    ODP = "application/vnd.oasis.opendocument.presentation"

    @property
    def is_office(self) -> bool:
        """An Office document, which is converted to PDF (with LibreOffice) before rendering."""
        return self in OFFICE_TYPES


OFFICE_TYPES: frozenset[DocumentType] = frozenset(
    {
        DocumentType.DOCX,
        DocumentType.XLSX,
        DocumentType.PPTX,
        DocumentType.ODT,
        DocumentType.ODS,
        DocumentType.ODP,
    }
)
"""The types LibreOffice turns into PDF first."""


class UnsupportedDocument(ValueError):
    """The content is not a document type faxfleet renders."""


_MAGIC: list[tuple[bytes, DocumentType]] = [
    (b"%PDF-", DocumentType.PDF),
    (b"\x89PNG\r\n\x1a\n", DocumentType.PNG),
    (b"\xff\xd8\xff", DocumentType.JPEG),
    (b"II*\x00", DocumentType.TIFF),
    (b"MM\x00*", DocumentType.TIFF),
]

_TEXT_CONTROL_OK = {9, 10, 12, 13}  # tab, newline, form feed, carriage return


def detect_type(data: bytes) -> DocumentType:
    """Return the document type of ``data`` or raise :class:`UnsupportedDocument`."""
    if not data:
        raise UnsupportedDocument("the document is empty")
    head = data[:1024]
    # A PDF may carry a few bytes of junk before its header; readers accept that.
    if b"%PDF-" in head:
        return DocumentType.PDF
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data.startswith(b"PK\x03\x04"):
        office = _office_type(data)
        if office is not None:
            return office
    if _looks_like_text(data):
        return DocumentType.TEXT
    raise UnsupportedDocument(
        "unsupported document type: expected PDF, plain text (UTF-8), PNG, JPEG, TIFF "
        "or an Office document (.docx, .xlsx, .pptx, .odt, .ods, .odp)"
    )


# OOXML: the package's [Content_Types].xml plus the main part of the application.
_OOXML_PARTS: list[tuple[str, DocumentType]] = [
    ("word/document.xml", DocumentType.DOCX),
    ("xl/workbook.xml", DocumentType.XLSX),
    ("ppt/presentation.xml", DocumentType.PPTX),
]
_ODF_TYPES = {
    DocumentType.ODT.value: DocumentType.ODT,
    DocumentType.ODS.value: DocumentType.ODS,
    DocumentType.ODP.value: DocumentType.ODP,
}
_MAX_MIMETYPE_BYTES = 100  # ODF's "mimetype" entry is one short line


def _office_type(data: bytes) -> DocumentType | None:
    """The Office type of a ZIP package, from its entries (only names and the tiny ODF
    ``mimetype`` entry are read, so a ZIP bomb costs nothing here)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            names = set(package.namelist())
            if "[Content_Types].xml" in names:
                for part, kind in _OOXML_PARTS:
                    if part in names:
                        return kind
                return None
            if "mimetype" in names:
                with package.open("mimetype") as entry:
                    declared = entry.read(_MAX_MIMETYPE_BYTES)
                return _ODF_TYPES.get(declared.decode("ascii", "replace").strip())
    except Exception:  # any unreadable ZIP is simply not an Office document
        return None
    return None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:65536]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Only a multi-byte character cut by the sample's end is forgiven.
        cut = len(data) > len(sample) and exc.reason == "unexpected end of data"
        if not cut:
            return False
        text = sample[: exc.start].decode("utf-8")
    if not text.strip():
        return False
    control = sum(1 for ch in text if ord(ch) < 32 and ord(ch) not in _TEXT_CONTROL_OK)
    return control == 0
