"""docs/class2.md shows the hang-up table the code uses, not an older copy."""

from __future__ import annotations

from pathlib import Path

from workers.fax.class2.codes import HANGUP_CODES, hangup_table_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "class2.md"
START = "<!-- hangup-table:start -->\n"
END = "<!-- hangup-table:end -->"


def test_doc_table_matches_the_code() -> None:
    text = DOC.read_text()
    table = text[text.index(START) + len(START) : text.index(END)]
    assert table == hangup_table_markdown()


def test_generated_table_lists_every_code() -> None:
    table = hangup_table_markdown()
    for code, h in HANGUP_CODES.items():
        assert f"| {code:02X} | {h.meaning} |" in table
