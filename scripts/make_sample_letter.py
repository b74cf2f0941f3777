"""Write faxfleet/samples/letter.docx, the Office sample of the README's tour.

A minimal WordprocessingML package written with ``zipfile`` (no Office library), with
fixed timestamps so the file is the same byte for byte each time:

    python scripts/make_sample_letter.py
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

TARGET = Path(__file__).resolve().parent.parent / "faxfleet" / "samples" / "letter.docx"
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
STAMP = (2026, 12, 7, 9, 0, 0)

LETTER = [
    ("title", "ACME Supplies"),
    ("small", "12 rue de la Paix, 75002 Paris  -  fax +33 1 42 68 53 99"),
    ("", ""),
    ("", "Paris, 7 December 2026"),
    ("", ""),
    ("bold", "Order 7781: confirmation of delivery dates"),
    ("", ""),
    ("", "Dear Mr Dupont,"),
    ("", ""),
    (
        "",
        "Thank you for your order 7781 of 3 December. We confirm the delivery of the "
        "12 pallets in two shipments: 8 pallets on Tuesday 15 December and 4 pallets on "
        "Friday 18 December, to your warehouse in Lyon.",
    ),
    ("", ""),
    (
        "",
        "The invoice follows by fax on the day of the first shipment. Please sign the "
        "delivery notes and fax them back to the number above.",
    ),
    ("", ""),
    ("", "Kind regards,"),
    ("", ""),
    ("", "Alice Martin"),
    ("", "Sales, ACME Supplies"),
]

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)


def _paragraph(style: str, text: str) -> str:
    size = {"title": 40, "small": 18}.get(style, 24)
    bold = "<w:b/>" if style in ("title", "bold") else ""
    props = f"<w:rPr>{bold}<w:sz w:val='{size}'/></w:rPr>"
    return f"<w:p><w:r>{props}<w:t xml:space='preserve'>{escape(text)}</w:t></w:r></w:p>"


def document() -> str:
    body = "".join(_paragraph(style, text) for style, text in LETTER)
    page = (
        "<w:sectPr><w:pgSz w:w='11906' w:h='16838'/>"
        "<w:pgMar w:top='1440' w:right='1440' w:bottom='1440' w:left='1440'/></w:sectPr>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:document xmlns:w="{W}"><w:body>{body}{page}</w:body></w:document>'
    )


def main() -> None:
    with zipfile.ZipFile(TARGET, "w") as package:
        for name, text in (
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", RELS),
            ("word/document.xml", document()),
        ):
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            package.writestr(info, text)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
