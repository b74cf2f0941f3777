"""What kind of document a byte string is, decided from its content, never its name.

The API refuses what no renderer can turn into pages before anything is queued; the
renderer uses the same answer to pick its path.
"""

from __future__ import annotations

from enum import StrEnum


class DocumentType(StrEnum):
    PDF = "application/pdf"
    TEXT = "text/plain"
    PNG = "image/png"
    JPEG = "image/jpeg"
    TIFF = "image/tiff"


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
    if _looks_like_text(data):
        return DocumentType.TEXT
    raise UnsupportedDocument(
        "unsupported document type: expected PDF, plain text (UTF-8), PNG, JPEG or TIFF"
    )


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
