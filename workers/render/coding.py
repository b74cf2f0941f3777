"""The three ways a fax page's rows are compressed, as negotiated with the far machine.

A page is rendered once but may be sent with any coding the receiving machine accepts
(its DIS frame says which), so the coding is a parameter of encoding and of
:func:`workers.render.tiff.transcode`, never baked into the rendered bitmap.
"""

from __future__ import annotations

from enum import StrEnum


class Coding(StrEnum):
    """T.4 / T.6 coding schemes, in the order every fax machine supports them."""

    MH = "mh"
    """Modified Huffman, T.4 one-dimensional (Group 3 1-D); every fax machine accepts it."""
    MR = "mr"
    """Modified READ, T.4 two-dimensional (Group 3 2-D), K = 2 standard / 4 fine."""
    MMR = "mmr"
    """Modified Modified READ, T.6 (Group 4); smallest, needs ECM on the line."""


TIFF_COMPRESSION = {Coding.MH: 3, Coding.MR: 3, Coding.MMR: 4}
"""TIFF Compression tag value per coding: 3 is CCITT T.4, 4 is CCITT T.6."""

T4_2D = 0x1
"""T4Options bit 0: the data is two-dimensionally (MR) coded."""


def coding_of(compression: int, t4_options: int) -> Coding | None:
    """The coding a TIFF page uses, from its Compression and T4Options tags (None: not fax)."""
    if compression == 4:
        return Coding.MMR
    if compression == 3:
        return Coding.MR if t4_options & T4_2D else Coding.MH
    return None
