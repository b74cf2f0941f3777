"""Turn uploaded business documents (PDF, plain text, PNG, JPEG, TIFF) into fax pages.

``render_documents`` returns one single-page TIFF per fax page: bilevel, 1728 pixels wide,
CCITT Group 4, min-is-white, 204 x 98 (standard) or 204 x 196 (fine) dpi, one strip.
"""

from .errors import RenderError
from .pipeline import render_documents

__all__ = ["RenderError", "render_documents"]
