"""Cover pages and the header line: rendered for real and decoded back with Pillow."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from faxfleet.messages import CoverFields, FaxRequest, Resolution
from workers.render import render_documents
from workers.render.coding import Coding
from workers.render.cover import cover_page, cover_tiff, render_text
from workers.render.errors import RenderError
from workers.render.header import band_rows, header_text, stamp_header
from workers.render.tiff import encode_page

WHEN = datetime(2026, 3, 14, 10, 22, tzinfo=UTC)
FIELDS = CoverFields(
    recipient_name="Dr. Jane Smith",
    recipient_numbers=["+33142685300"],
    sender_name="Alice Martin",
    sender_fax="+33 1 42 68 53 99",
    sender_company="ACME Industries SA\n12 rue de la Paix, 75002 Paris",
    subject="Invoice 2026-114",
    comment="Please find the invoice attached.\nPayment within 30 days.",
)


def ink_rows(image: Image.Image) -> list[int]:
    """Indexes of rows with at least one black pixel."""
    gray = image.convert("L")
    return [
        y for y in range(gray.height) if gray.crop((0, y, gray.width, y + 1)).getextrema()[0] == 0
    ]


def decode(tiff: bytes) -> Image.Image:
    with Image.open(io.BytesIO(tiff)) as image:
        image.load()
        return image.copy()


def test_default_template_carries_every_field() -> None:
    text = render_text(FIELDS, pages=4, date=WHEN)
    for value in (
        "= ACME Industries SA",
        ". 12 rue de la Paix, 75002 Paris",
        "# FAX",
        "| To | Dr. Jane Smith",
        "+33142685300",
        "| From | Alice Martin",
        "+33 1 42 68 53 99",
        "2026-03-14 10:22",
        "| Pages | 4 (including this cover page)",
        "| Subject | Invoice 2026-114",
        "> Please find the invoice attached.",
        "> Payment within 30 days.",
    ):
        assert value in text, value
    assert any(line.startswith("_ ") for line in text.splitlines())


def test_cover_to_and_from_are_never_blank() -> None:
    """``faxfleet send --cover`` with no names: To shows the numbers, From the sender or
    company, else the tenant; with both, the name and its numbers, the sender and
    company."""
    numbers_only = CoverFields(recipient_numbers=["+33142685300", "+12125550100"])
    text = render_text(numbers_only, pages=2, date=WHEN, tenant="acme")
    assert "| To | +33142685300, +12125550100\n" in text
    assert "| From | acme\n" in text
    company = CoverFields(recipient_numbers=["+33142685300"], sender_company="ACME SA\nParis")
    assert "| From | ACME SA\n" in render_text(company, pages=1, date=WHEN)
    full = render_text(FIELDS, pages=4, date=WHEN)
    assert "| To | Dr. Jane Smith (+33142685300)\n" in full
    assert "| From | Alice Martin, ACME Industries SA\n" in full
    # Drawn on the page: the To and From rows have ink only with their values.
    blank = ink_rows(cover_page(CoverFields(), Resolution.FINE, pages=2, date=WHEN))
    filled = ink_rows(cover_page(numbers_only, Resolution.FINE, pages=2, date=WHEN, tenant="acme"))
    assert filled != blank
    page = cover_page(numbers_only, Resolution.FINE, pages=2, date=WHEN, tenant="acme")
    empty = cover_page(CoverFields(), Resolution.FINE, pages=2, date=WHEN)
    # Right of the key column (38 mm after the 20 mm margin), the value column has ink.
    values = (600, 0, 1600, page.height // 2)
    assert (
        page.convert("L").crop(values).histogram()[0]
        > empty.convert("L").crop(values).histogram()[0]
    )


def test_single_line_fields_cannot_add_layout_lines() -> None:
    sneaky = FIELDS.model_copy(update={"subject": "hello\n# HUGE\n= band"})
    text = render_text(sneaky, pages=2, date=WHEN)
    assert "| Subject | hello # HUGE = band" in text
    assert "\n# HUGE" not in text


@pytest.mark.parametrize(
    ("resolution", "rows"), [(Resolution.FINE, 2292), (Resolution.STANDARD, 1146)]
)
def test_cover_page_is_a_full_fax_page_with_ink_in_every_part(
    resolution: Resolution, rows: int
) -> None:
    page = decode(cover_tiff(FIELDS, resolution, pages=3, date=WHEN))
    assert page.mode == "1"
    assert page.size == (1728, rows)
    assert page.info["compression"] == "group4"
    inked = ink_rows(page)
    # header band near the top, key/value block in the upper half, footer at the bottom
    assert min(inked) < rows * 0.12
    assert any(rows * 0.25 < y < rows * 0.5 for y in inked)
    assert max(inked) > rows * 0.9
    # the company band is solid black across the text width
    band_row = page.convert("L").crop((300, min(inked) + 3, 1400, min(inked) + 4))
    assert band_row.getextrema() == (0, 0)


def test_empty_fields_still_give_a_cover() -> None:
    page = cover_page(CoverFields(), Resolution.FINE, pages=1, date=WHEN)
    assert ink_rows(page)  # title, rules and labels


def test_custom_template_per_tenant_then_site(tmp_path: Path) -> None:
    (tmp_path / "acme.j2").write_text("# ACME {{ subject }}\n| Pages | {{ pages }}\n")
    (tmp_path / "paris.j2").write_text("= PARIS OFFICE\n> {{ extra.ref }}\n")
    fields = FIELDS.model_copy(update={"extra": {"ref": "PO-77"}})
    by_tenant = render_text(
        fields, pages=2, date=WHEN, tenant="acme", site="paris", template_dir=tmp_path
    )
    assert by_tenant == "# ACME Invoice 2026-114\n| Pages | 2"
    by_site = render_text(
        fields, pages=2, date=WHEN, tenant="globex", site="paris", template_dir=tmp_path
    )
    assert by_site == "= PARIS OFFICE\n> PO-77"
    default = render_text(
        fields, pages=2, date=WHEN, tenant="globex", site="rome", template_dir=tmp_path
    )
    assert "# FAX" in default
    # a name that is not a plain file name never reaches the file system
    escaped = render_text(fields, pages=2, date=WHEN, tenant="../acme", template_dir=tmp_path)
    assert "# FAX" in escaped
    custom = cover_page(
        fields, Resolution.FINE, pages=2, date=WHEN, tenant="acme", template_dir=tmp_path
    )
    builtin = cover_page(fields, Resolution.FINE, pages=2, date=WHEN)
    assert custom.tobytes() != builtin.tobytes()
    assert len(ink_rows(custom)) < len(ink_rows(builtin))


def test_broken_custom_template_is_a_render_error(tmp_path: Path) -> None:
    (tmp_path / "acme.j2").write_text("{% for x in %}")
    with pytest.raises(RenderError, match=r"cover template acme\.j2"):
        render_text(FIELDS, pages=2, date=WHEN, tenant="acme", template_dir=tmp_path)


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "acme.j2").write_text("{{ ''.__class__.__mro__ }}")
    with pytest.raises(RenderError):
        render_text(FIELDS, pages=2, date=WHEN, tenant="acme", template_dir=tmp_path)


def test_request_validates_cover_fields() -> None:
    ok = FaxRequest(to=["+33142685300"], cover=True, subject="s", cover_fields={"ref": "1"})
    assert ok.cover and ok.header
    with pytest.raises(ValueError):
        FaxRequest(to=["+33142685300"], subject="x" * 201)
    with pytest.raises(ValueError):
        FaxRequest(to=["+33142685300"], cover_fields={"k": "v" * 501})


def test_header_text() -> None:
    assert header_text("ACME  Paris", WHEN, 2, 5) == "From ACME Paris   2026-03-14 10:22   Page 2/5"
    assert header_text(None, WHEN, 1, 1) == "2026-03-14 10:22   Page 1/1"


@pytest.mark.parametrize("resolution", [Resolution.FINE, Resolution.STANDARD])
def test_stamp_header_draws_in_the_band_only(resolution: Resolution) -> None:
    (page,) = render_documents([b"Invoice 2026-114\n\nTotal due: 1,250.00 EUR"], resolution)
    stamped = stamp_header(page, header_text("ACME", WHEN, 1, 3))
    before, after = decode(page), decode(stamped)
    assert after.size == before.size
    assert after.info["compression"] == "group4"
    assert after.info["dpi"] == before.info["dpi"]
    rows = band_rows(before.info["dpi"][1])
    assert rows == (31 if resolution is Resolution.FINE else 15)
    band_before = before.convert("L").crop((0, 0, 1728, rows))
    band_after = after.convert("L").crop((0, 0, 1728, rows))
    assert band_before.getextrema() == (255, 255)  # nothing there before
    assert band_after.getextrema()[0] == 0  # text now
    rest = (0, rows, 1728, before.height)
    assert before.convert("L").crop(rest).tobytes() == after.convert("L").crop(rest).tobytes()


def test_stamp_header_clears_the_band_first() -> None:
    black = Image.new("1", (1728, 2292), 0)
    stamped = decode(stamp_header(encode_page(black, Resolution.FINE), "From X"))
    band = stamped.convert("L").crop((0, 0, 1728, band_rows(196)))
    assert band.getextrema() == (0, 255)  # white paper with black text, no longer all black
    assert stamped.convert("L").crop((0, 40, 1728, 2292)).getextrema() == (0, 0)


@pytest.mark.parametrize("coding", list(Coding))
def test_stamp_header_keeps_the_coding(coding: Coding) -> None:
    blank = Image.new("1", (1728, 1146), 1)
    original = encode_page(blank, Resolution.STANDARD, coding)
    stamped = stamp_header(original, "From X   Page 1/1")
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(stamped)) as b:
        assert b.tag_v2.get(259) == a.tag_v2.get(259)
        assert b.tag_v2.get(292, 0) == a.tag_v2.get(292, 0)
        assert b.convert("L").crop((0, 0, 1728, 15)).getextrema()[0] == 0
