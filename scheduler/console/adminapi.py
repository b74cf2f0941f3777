"""How the admin pages reach the routing service's admin API (sites, groups, cost tables).

The scheduler never imports ``routing``: the pages talk to the admin API over HTTP
(``FAXFLEET_ROUTING_ADMIN_URL``) with :class:`~faxfleet.admin_client.AdminClient`,
presenting the admin key the signed-in admin typed at sign-in, so the routing service
checks every change against that key as it does for the CLI.

That key is kept server-side only: at sign-in, an admin session's key is stored in Redis
under :func:`faxfleet.keys.console_admin_key` (the session's random token in the name)
with the session's time to live, renewed on each use of the admin pages, and deleted at
sign-out. The cookie never holds it, no page ever shows it, and a tenant session has
none. When it is gone (expired, or a session opened before it was kept) the admin pages
ask to sign in again (docs/console.md).
"""

from __future__ import annotations

from typing import Any

from faxfleet import keys
from faxfleet.admin_client import AdminClient, AdminError, Unreachable
from faxfleet.credentials import StoredKey
from scheduler import tasks
from scheduler.console import web
from scheduler.console.web import Session

__all__ = ["AdminError", "Unreachable", "client", "forget", "refusal", "remember"]

TIMEOUT = 15.0


def _redis() -> Any:
    return tasks.store().r


def remember(token: str, stored: StoredKey, key: str) -> None:
    """At sign-in: keep an admin's key for its session (tenant keys are not kept)."""
    if stored.admin:
        _redis().set(keys.console_admin_key(token), key, ex=web.settings.console_session_seconds)


def forget(token: str) -> None:
    """At sign-out."""
    _redis().delete(keys.console_admin_key(token))


def client(session: Session) -> AdminClient:
    """An admin API client acting with ``session``'s admin key (renewing its lifetime);
    :class:`web.Forbidden` if the session has no key kept."""
    name = keys.console_admin_key(session.token)
    r = _redis()
    raw = r.get(name)
    if raw is None or not session.admin:
        raise web.Forbidden(
            "the fleet pages need your admin key again: sign out and sign in with it"
        )
    r.expire(name, web.settings.console_session_seconds)
    key = raw.decode() if isinstance(raw, bytes) else str(raw)
    return AdminClient([web.settings.routing_admin_url], admin_key=key, timeout=TIMEOUT)


def refusal(exc: AdminError) -> tuple[str, list[str]]:
    """The admin API's refusal as text for the page, and its line-numbered cost table
    errors (empty for any other refusal)."""
    if isinstance(exc, Unreachable):
        return "the routing admin service is not answering: try again shortly", []
    errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
    lines = [str(e) for e in errors] if isinstance(errors, list) else []
    return exc.reason, lines
