"""The T.4 code tables (ITU-T T.4 Tables 1-4), as bit strings in transmission order.

Decoding works on a page's bits as a Python ``str`` of "0"/"1": slicing and ``str.find``
run in C, which makes a pure-Python decoder fast enough for a page per call. Each table is
also expanded into a lookup keyed by the next :data:`PEEK` bits, so one dict lookup decodes
one code whatever its length.
"""

from __future__ import annotations

EOL = "000000000001"


def _words(text: str) -> list[str]:
    return text.split()


_WHITE_TERMINATING = _words(
    "00110101 000111 0111 1000 1011 1100 1110 1111 10011 10100 00111 01000 001000 000011 "
    "110100 110101 101010 101011 0100111 0001100 0001000 0010111 0000011 0000100 0101000 "
    "0101011 0010011 0100100 0011000 00000010 00000011 00011010 00011011 00010010 00010011 "
    "00010100 00010101 00010110 00010111 00101000 00101001 00101010 00101011 00101100 "
    "00101101 00000100 00000101 00001010 00001011 01010010 01010011 01010100 01010101 "
    "00100100 00100101 01011000 01011001 01011010 01011011 01001010 01001011 00110010 "
    "00110011 00110100"
)
"""White runs 0 to 63."""

_WHITE_MAKEUP = _words(
    "11011 10010 010111 0110111 00110110 00110111 01100100 01100101 01101000 01100111 "
    "011001100 011001101 011010010 011010011 011010100 011010101 011010110 011010111 "
    "011011000 011011001 011011010 011011011 010011000 010011001 010011010 011000 010011011"
)
"""White runs 64, 128, ... 1728."""

_BLACK_TERMINATING = _words(
    "0000110111 010 11 10 011 0011 0010 00011 000101 000100 0000100 0000101 0000111 "
    "00000100 00000111 000011000 0000010111 0000011000 0000001000 00001100111 00001101000 "
    "00001101100 00000110111 00000101000 00000010111 00000011000 000011001010 000011001011 "
    "000011001100 000011001101 000001101000 000001101001 000001101010 000001101011 "
    "000011010010 000011010011 000011010100 000011010101 000011010110 000011010111 "
    "000001101100 000001101101 000011011010 000011011011 000001010100 000001010101 "
    "000001010110 000001010111 000001100100 000001100101 000001010010 000001010011 "
    "000000100100 000000110111 000000111000 000000100111 000000101000 000001011000 "
    "000001011001 000000101011 000000101100 000001011010 000001100110 000001100111"
)
"""Black runs 0 to 63."""

_BLACK_MAKEUP = _words(
    "0000001111 000011001000 000011001001 000001011011 000000110011 000000110100 "
    "000000110101 0000001101100 0000001101101 0000001001010 0000001001011 0000001001100 "
    "0000001001101 0000001110010 0000001110011 0000001110100 0000001110101 0000001110110 "
    "0000001110111 0000001010010 0000001010011 0000001010100 0000001010101 0000001011010 "
    "0000001011011 0000001100100 0000001100101"
)
"""Black runs 64, 128, ... 1728."""

_EXTENDED_MAKEUP = _words(
    "00000001000 00000001100 00000001101 000000010010 000000010011 000000010100 "
    "000000010101 000000010110 000000010111 000000011100 000000011101 000000011110 "
    "000000011111"
)
"""Runs 1792, 1856, ... 2560, either colour (for pages wider than 1728)."""


def _runs(terminating: list[str], makeup: list[str]) -> dict[str, int]:
    codes = {code: run for run, code in enumerate(terminating)}
    codes.update({code: 64 * (index + 1) for index, code in enumerate(makeup)})
    codes.update({code: 1792 + 64 * index for index, code in enumerate(_EXTENDED_MAKEUP)})
    return codes


WHITE_CODES = _runs(_WHITE_TERMINATING, _WHITE_MAKEUP)
"""Bit string -> white run length (a run >= 64 is a make-up code: a terminating one follows)."""
BLACK_CODES = _runs(_BLACK_TERMINATING, _BLACK_MAKEUP)
"""Bit string -> black run length."""

# Two-dimensional coding modes (T.4 Table 4).
PASS, HORIZONTAL, EXTENSION, END = "P", "H", "X", "E"
MODE_CODES: dict[str, str | int] = {
    "0001": PASS,
    "001": HORIZONTAL,
    "1": 0,
    "011": 1,
    "000011": 2,
    "0000011": 3,
    "010": -1,
    "000010": -2,
    "0000010": -3,
    "0000001": EXTENSION,
    EOL: END,
}
"""Bit string -> mode: PASS, HORIZONTAL, a vertical offset a1 - b1, EXTENSION, or END (EOL)."""

PEEK = 13
"""Bits every lookup looks at: the longest code (black make-up) is 13 bits."""

Lookup = dict[str, tuple[int | str, int]]


def expand(codes: dict[str, int] | dict[str, str | int], end: str | None = EOL) -> Lookup:
    """Every PEEK-bit string that starts with a code -> (value, code length).

    ``end`` adds the EOL as the value END, so a run decoder stops cleanly at an EOL.
    """
    table: Lookup = {}
    entries: list[tuple[str, int | str]] = list(codes.items())
    if end is not None and end not in codes:
        entries.append((end, END))
    for code, value in entries:
        free = PEEK - len(code)
        for tail in range(1 << free):
            key = code + (format(tail, f"0{free}b") if free else "")
            table[key] = (value, len(code))
    return table


WHITE = expand(WHITE_CODES)
BLACK = expand(BLACK_CODES)
MODES = expand(MODE_CODES, end=None)


def encode_run(run: int, white: bool) -> str:
    """The code words for one run (make-up codes first), as a bit string."""
    codes = _WHITE_CODE_OF if white else _BLACK_CODE_OF
    out = []
    while run >= 2560:
        out.append(codes[2560])
        run -= 2560
    if run >= 64:
        out.append(codes[run - run % 64])
        run %= 64
    out.append(codes[run])
    return "".join(out)


_WHITE_CODE_OF = {run: code for code, run in WHITE_CODES.items()}
_BLACK_CODE_OF = {run: code for code, run in BLACK_CODES.items()}
