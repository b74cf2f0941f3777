"""The web console: server-rendered pages (Jinja2 templates, htmx served from this
package) on the API's own port, under ``/console`` (docs/console.md).

:func:`mount` adds it to the API app (``scheduler/api.py`` does). Pages live in modules
of this package, each an :class:`fastapi.APIRouter` listed in :data:`PAGES`; what they
share (sessions, ``require_session`` / ``require_admin``, the CSRF check, ``render``) is
in :mod:`scheduler.console.web`, whose docstring shows how to add a page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

PAGES = [
    "scheduler.console.auth",
    "scheduler.console.faxes",
    "scheduler.console.report",
    "scheduler.console.fleet",
    "scheduler.console.sites",
    "scheduler.console.costs",
]
"""Modules with a ``router`` to include, in order. An admin page's module goes here too:
its routes come before the catch-all that answers other ``/console/admin/...`` paths."""

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Serve the console under ``/console`` (and send ``/`` there)."""
    import importlib

    from scheduler.console import web

    app.mount(f"{web.PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(web.NotSignedIn, web.not_signed_in)
    app.add_exception_handler(web.Forbidden, web.forbidden)
    for name in PAGES:
        app.include_router(importlib.import_module(name).router, include_in_schema=False)

    # Last, after every page: an admin path no page serves is a 403 to a tenant (it learns
    # nothing of which admin pages exist) and a 404 to an admin.
    @app.api_route(
        f"{web.PREFIX}/admin/{{rest:path}}", methods=["GET", "POST"], include_in_schema=False
    )
    def _no_admin_page(
        request: Request, rest: str, _: web.Session = Depends(web.require_admin)
    ) -> Response:
        return web.render(
            request, "error.html", 404, title="No such page", message=f"no admin page {rest!r}"
        )

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{web.PREFIX}/", status_code=307)


# The page modules use scheduler.api (the fax operations they share with the API), which
# mounts the console when it loads: load it first, whichever module is imported first.
from scheduler import api as _api  # noqa: E402, F401
