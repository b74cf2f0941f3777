"""The two ways rendering fails.

Modules that read one document raise :class:`DocumentError` with a reason only; they do not
know the document's position in the fax. The pipeline adds "document N: " and re-raises
:class:`RenderError`, the one exception callers catch. Keeping the two apart means a reader
module can never produce a half-prefixed or doubly-prefixed message.
"""

from __future__ import annotations


class RenderError(Exception):
    """A document that cannot become fax pages.

    ``str(exc)`` is a specific reason a user can act on, e.g. "document 2: the PDF is
    encrypted" or "too many pages: 612 (limit 500)".

    ``page`` is the 0-based fax page that failed, when one did (a document that cannot be
    opened fails before any page).
    """

    page: int | None = None


class DocumentError(Exception):
    """One document cannot be rendered; ``str(exc)`` is the reason without the document number."""
