"""Office documents: sniffed from content, converted by a real LibreOffice, rendered.

The documents are built here by hand with ``zipfile`` (a minimal WordprocessingML package, a
minimal SpreadsheetML package and a minimal ODF text document), so no Office library is
needed; LibreOffice itself must be installed (scripts/system-deps.sh installs it in CI).
"""

from __future__ import annotations

import io
import zipfile

import pypdfium2 as pdfium
import pytest

from faxfleet.documents import DocumentType, UnsupportedDocument, detect_type
from faxfleet.messages import Resolution
from workers.render import RenderError, office
from workers.render.sandbox import render_sandboxed

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006"
SHEET = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _zip(entries: list[tuple[str, str]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        for name, text in entries:
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            package.writestr(name, text, compress_type=method)
    return out.getvalue()


def make_docx(*paragraphs: str) -> bytes:
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    return _zip(
        [
            (
                "[Content_Types].xml",
                f'<?xml version="1.0"?><Types xmlns="{PKG}/content-types">'
                '<Default Extension="rels" '
                'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                '<Default Extension="xml" ContentType="application/xml"/>'
                '<Override PartName="/word/document.xml" ContentType="application/'
                'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
                "</Types>",
            ),
            (
                "_rels/.rels",
                f'<?xml version="1.0"?><Relationships xmlns="{PKG}/relationships">'
                f'<Relationship Id="rId1" Type="{R}/officeDocument" '
                'Target="word/document.xml"/></Relationships>',
            ),
            (
                "word/document.xml",
                f'<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>{body}'
                "</w:body></w:document>",
            ),
        ]
    )


def make_xlsx(cell: str) -> bytes:
    ct = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    return _zip(
        [
            (
                "[Content_Types].xml",
                f'<?xml version="1.0"?><Types xmlns="{PKG}/content-types">'
                '<Default Extension="rels" '
                'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                '<Default Extension="xml" ContentType="application/xml"/>'
                f'<Override PartName="/xl/workbook.xml" ContentType="{ct}.sheet.main+xml"/>'
                f'<Override PartName="/xl/worksheets/sheet1.xml" '
                f'ContentType="{ct}.worksheet+xml"/></Types>',
            ),
            (
                "_rels/.rels",
                f'<?xml version="1.0"?><Relationships xmlns="{PKG}/relationships">'
                f'<Relationship Id="rId1" Type="{R}/officeDocument" '
                'Target="xl/workbook.xml"/></Relationships>',
            ),
            (
                "xl/workbook.xml",
                f'<?xml version="1.0"?><workbook xmlns="{SHEET}" xmlns:r="{R}"><sheets>'
                '<sheet name="Invoice" sheetId="1" r:id="rId1"/></sheets></workbook>',
            ),
            (
                "xl/_rels/workbook.xml.rels",
                f'<?xml version="1.0"?><Relationships xmlns="{PKG}/relationships">'
                f'<Relationship Id="rId1" Type="{R}/worksheet" '
                'Target="worksheets/sheet1.xml"/></Relationships>',
            ),
            (
                "xl/worksheets/sheet1.xml",
                f'<?xml version="1.0"?><worksheet xmlns="{SHEET}"><sheetData>'
                f'<row r="1"><c r="A1" t="inlineStr"><is><t>{cell}</t></is></c>'
                '<c r="B1"><v>42</v></c></row></sheetData></worksheet>',
            ),
        ]
    )


def make_odt(*paragraphs: str) -> bytes:
    office_ns = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
    text_ns = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
    body = "".join(f"<text:p>{p}</text:p>" for p in paragraphs)
    return _zip(
        [
            ("mimetype", "application/vnd.oasis.opendocument.text"),
            (
                "META-INF/manifest.xml",
                '<?xml version="1.0"?><manifest:manifest xmlns:manifest='
                '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                '<manifest:file-entry manifest:full-path="/" manifest:media-type='
                '"application/vnd.oasis.opendocument.text"/>'
                '<manifest:file-entry manifest:full-path="content.xml" '
                'manifest:media-type="text/xml"/></manifest:manifest>',
            ),
            (
                "content.xml",
                f'<?xml version="1.0"?><office:document-content xmlns:office="{office_ns}" '
                f'xmlns:text="{text_ns}" office:version="1.2"><office:body><office:text>'
                f"{body}</office:text></office:body></office:document-content>",
            ),
        ]
    )


def pdf_text(data: bytes) -> tuple[int, str]:
    pdf = pdfium.PdfDocument(data)
    try:
        texts = []
        for page in pdf:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return len(pdf), "\n".join(texts)
    finally:
        pdf.close()


# --- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (make_docx("x"), DocumentType.DOCX),
        (make_xlsx("x"), DocumentType.XLSX),
        (make_odt("x"), DocumentType.ODT),
        (
            _zip([("mimetype", DocumentType.ODS.value), ("content.xml", "<x/>")]),
            DocumentType.ODS,
        ),
        (
            _zip([("mimetype", DocumentType.ODP.value), ("content.xml", "<x/>")]),
            DocumentType.ODP,
        ),
        (
            _zip([("[Content_Types].xml", "<Types/>"), ("ppt/presentation.xml", "<p/>")]),
            DocumentType.PPTX,
        ),
    ],
)
def test_office_types_are_detected_from_content(data: bytes, expected: DocumentType) -> None:
    assert detect_type(data) is expected
    assert expected.is_office


@pytest.mark.parametrize(
    "data",
    [
        _zip([("readme.txt", "just a zip")]),
        _zip([("[Content_Types].xml", "<Types/>"), ("other/part.xml", "<x/>")]),
        _zip([("mimetype", "application/epub+zip"), ("content.opf", "<x/>")]),
        make_docx("x")[:200],  # truncated: no central directory
    ],
)
def test_other_zips_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedDocument):
        detect_type(data)


def test_non_office_types_are_not_office() -> None:
    assert not DocumentType.PDF.is_office
    assert not DocumentType.TEXT.is_office


# --- conversion with LibreOffice ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        (make_docx("Invoice 2024-117", "Total due"), DocumentType.DOCX, ["Invoice 2024-117"]),
        (make_odt("Lab result OK", "Signed"), DocumentType.ODT, ["Lab result OK"]),
        (make_xlsx("PO-117"), DocumentType.XLSX, ["PO-117", "42"]),
    ],
)
def test_to_pdf_converts_with_libreoffice(
    data: bytes, kind: DocumentType, words: list[str]
) -> None:
    pdf = office.to_pdf(data, kind, timeout=60)
    pages, text = pdf_text(pdf)
    assert pages >= 1
    for word in words:
        assert word in text


def test_sandboxed_render_converts_office_documents_first() -> None:
    pages = render_sandboxed(
        [make_docx("Page one"), b"plain text\n"],
        Resolution.STANDARD,
        max_pages=10,
        timeout_s=60,
        memory_mb=1024,
    )
    assert len(pages) == 2
    assert all(page.startswith((b"II*\x00", b"MM\x00*")) for page in pages)


def test_concurrent_conversions_do_not_collide() -> None:
    from concurrent.futures import ThreadPoolExecutor

    docs = [make_docx(f"Copy {i}") for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        pdfs = list(pool.map(lambda d: office.to_pdf(d, DocumentType.DOCX), docs))
    for i, pdf in enumerate(pdfs):
        assert f"Copy {i}" in pdf_text(pdf)[1]


def test_garbage_office_document_fails_clearly() -> None:
    with pytest.raises(RenderError, match=r"^LibreOffice could not convert the Office document"):
        office.to_pdf(b"PK" + b"\x00" * 50, DocumentType.DOCX, timeout=60)


def test_timeout_is_reported() -> None:
    with pytest.raises(RenderError, match=r"took longer than 0\.01 s"):
        office.to_pdf(make_docx("slow"), DocumentType.DOCX, timeout=0.01)


def test_missing_libreoffice_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RenderError) as caught:
        office.to_pdf(make_docx("x"), DocumentType.DOCX)
    assert str(caught.value) == office.NOT_INSTALLED
    assert "apt-get install libreoffice-writer libreoffice-calc" in str(caught.value)


def test_missing_libreoffice_through_the_sandbox_names_the_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RenderError, match=r"^document 2: Office documents need LibreOffice"):
        render_sandboxed([b"text\n", make_odt("x")], Resolution.FINE, timeout_s=30, memory_mb=512)


def test_to_pdf_refuses_non_office_kinds() -> None:
    with pytest.raises(ValueError, match="not an Office document"):
        office.to_pdf(b"%PDF-1.4", DocumentType.PDF)
