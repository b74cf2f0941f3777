"""Small enumerations shared by messages and the renderer, free of pydantic.

The renderer's warm sandbox process imports what rendering needs once and forks a process
per job from it; importing only these (not the pydantic message models) keeps that warm
process small, and so every fork of it cheap.
"""

from __future__ import annotations

from enum import StrEnum


class Resolution(StrEnum):
    STANDARD = "standard"  # 204 x 98 dpi
    FINE = "fine"  # 204 x 196 dpi
