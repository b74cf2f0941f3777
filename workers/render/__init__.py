"""Turn uploaded business documents (PDF, plain text, PNG, JPEG, TIFF) into fax pages.

``render_documents`` returns one single-page TIFF per fax page: bilevel, 1728 pixels wide,
CCITT Group 4, min-is-white, 204 x 98 (standard) or 204 x 196 (fine) dpi, one strip.

Pixel work (thresholding, screening, packing rows) is numpy's elementwise code; no linear
algebra is ever asked of it. Its OpenBLAS would still start a pool of threads in every
process that imports it (workers, the warm renderer, every forked job), which spin and,
in a process that forks, are hazards; one thread is all this package needs.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import RenderError
from .pipeline import render_documents

__all__ = ["RenderError", "render_documents"]
