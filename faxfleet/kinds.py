"""Small enumerations shared by messages and the renderer, free of pydantic.

The renderer's sandbox starts a fresh process per job; importing only these (not the
pydantic message models) keeps that start cheap.
"""

from __future__ import annotations

from enum import StrEnum


class Resolution(StrEnum):
    STANDARD = "standard"  # 204 x 98 dpi
    FINE = "fine"  # 204 x 196 dpi
