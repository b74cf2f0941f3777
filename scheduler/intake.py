"""Turning a submission into a stored fax: every check happens before anything is queued.

The HTTP API is the one door (the Python client and the CLI both go through it), and this
module is the code behind it: validate the request and documents, normalise numbers,
store the documents and the fax, and start rendering.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from faxfleet import destinations, egress, keys
from faxfleet.documents import UnsupportedDocument, detect_type
from faxfleet.messages import (
    CoverFields,
    DocumentInfo,
    FaxRequest,
    FaxStatus,
    JobState,
    RecipientStatus,
    now,
)
from faxfleet.numbers import InvalidNumber, to_e164
from faxfleet.settings import Settings
from scheduler.allowance import Allowance, seconds_to_midnight
from scheduler.store import JobStore, idem_key


class Rejected(ValueError):
    """A submission refused with a reason; ``status`` is the HTTP code to answer with."""

    def __init__(
        self, reason: str, status: int = 422, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


def new_job_id() -> str:
    return "fx_" + secrets.token_hex(8)


def validate(
    request: FaxRequest, uploads: list[Upload], settings: Settings, home_sites: set[str]
) -> tuple[list[str], list[DocumentInfo]]:
    """Check everything; return the E.164 numbers and document descriptions."""
    home = request.home_site or settings.site
    if home not in home_sites:
        known = ", ".join(sorted(home_sites)) or "none yet"
        raise Rejected(f"home_site {home!r} is not a site of this fleet (known: {known})")
    if not uploads:
        raise Rejected("at least one document is required")
    if len(uploads) > settings.max_documents:
        raise Rejected(f"too many documents: {len(uploads)} (limit {settings.max_documents})")
    total = sum(len(u.data) for u in uploads)
    if total > settings.max_upload_bytes:
        raise Rejected(
            f"upload too large: {total} bytes (limit {settings.max_upload_bytes})", status=413
        )
    if len(request.to) > settings.max_recipients:
        raise Rejected(f"too many recipients: {len(request.to)} (limit {settings.max_recipients})")
    numbers: list[str] = []
    for i, raw in enumerate(request.to):
        try:
            numbers.append(to_e164(raw, settings.default_region))
        except InvalidNumber as exc:
            raise Rejected(f"to[{i}]: {exc}") from None
    docs: list[DocumentInfo] = []
    for i, upload in enumerate(uploads):
        if not upload.data:
            raise Rejected(f"document {i + 1} ({upload.name!r}) is empty")
        try:
            kind = detect_type(upload.data)
        except UnsupportedDocument as exc:
            raise Rejected(f"document {i + 1} ({upload.name!r}): {exc}", status=415) from None
        docs.append(DocumentInfo(name=upload.name, content_type=kind.value, size=len(upload.data)))
    if request.notify.callback_url:
        check_callback_url(request.notify.callback_url, settings)
    if request.notify.email and not is_mail_address(request.notify.email):
        raise Rejected(
            "notify.email must be one e-mail address such as name@example.com (no list, "
            "display name, spaces or line breaks)"
        )
    return numbers, docs


def check_callback_url(url: str, settings: Settings) -> None:
    """Refuse a callback URL that can never be delivered: not a plain http(s) URL with a
    host, or an IP address that is neither public nor opened by FAXFLEET_CALLBACK_ALLOW.
    A host name is checked when the callback is sent: what it resolves to may change."""
    try:
        parsed = egress.check_url(url)
    except egress.BadURL as exc:
        raise Rejected(f"notify.callback_url {exc}") from None
    address = egress.literal_address(parsed.host)
    if address is None:
        return
    port = egress.default_port(parsed)
    reason = egress.refusal(parsed.host, address, port, settings.callback_allow_list)
    if reason is not None:
        raise Rejected(
            f"notify.callback_url: {address} is not a public address ({reason}); callbacks "
            "go to public addresses only, unless the fleet's FAXFLEET_CALLBACK_ALLOW opens it"
        )


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MAIL_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")


def is_mail_address(text: str) -> bool:
    """One plain address (``local@domain``, ASCII, at most 254 characters): what SMTP
    takes as a single recipient, with nothing that could add another or a header."""
    local, _, _ = text.partition("@")
    return len(text) <= 254 and len(local) <= 64 and _MAIL_ADDRESS.fullmatch(text) is not None


def _span(delta: timedelta) -> str:
    """``6 days 21 hours``."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


def check_schedule(request: FaxRequest, settings: Settings, created: datetime) -> None:
    """A fax must be able to finish before its documents and rendered pages expire: they
    are kept ``retention_seconds`` after submission, and a fax keeps trying for its kill
    time (``kill_after_seconds``) after it starts (``send_after``, or at once). So
    ``send_after`` is at most the retention less the kill time ahead (6 days 21 hours
    by default)."""
    retention = timedelta(seconds=settings.retention_seconds)
    kill_after = timedelta(seconds=request.kill_after_seconds or settings.kill_after_seconds)
    if kill_after > retention:
        raise Rejected(
            f"kill_after_seconds ({_span(kill_after)}) is longer than the {_span(retention)} "
            "a fax's documents are kept"
        )
    horizon = retention - kill_after
    if request.send_after is not None and request.send_after - created > horizon:
        latest = created + horizon
        raise Rejected(
            f"send_after is too far ahead: at most {_span(horizon)} from now "
            f"({latest:%Y-%m-%d %H:%M} UTC), as a fax's documents are kept {_span(retention)} "
            f"and it may keep trying for {_span(kill_after)} after send_after"
        )


def cover_fields(request: FaxRequest, numbers: list[str]) -> CoverFields | None:
    """The cover page's fields if the request asks for a cover page."""
    if not request.cover:
        return None
    return CoverFields(
        recipient_name=request.recipient_name,
        recipient_numbers=numbers,
        sender_name=request.sender,
        sender_fax=request.sender_fax,
        sender_company=request.sender_company,
        subject=request.subject,
        comment=request.comment,
        extra=request.cover_fields,
    )


def admit(
    allowance: Allowance,
    tenant: str,
    request: FaxRequest,
    numbers: list[str],
    documents: int,
    job_id: str,
    overridden_by: str | None,
    replay: bool,
) -> str | None:
    """Apply the tenant's destination policy and daily page quota (docs/administration.md):
    refuse (422 naming each barred number and the rule; 429 with the quota and what is
    used) or charge the fax's least page count. ``overridden_by``: the administrator who
    submits it with ``override_policy``, who passes both; the returned note says so for
    the fax's history. An idempotent ``replay`` is not charged again."""
    rules = allowance.rules(tenant)
    barred = destinations.check_all(numbers, rules)
    if barred and overridden_by is None:
        raise Rejected("; ".join(f"to[{i}]: {refusal.reason}" for i, refusal in barred))
    broken = [f"to[{i}]: {refusal.reason}" for i, refusal in barred]
    if not replay:
        need = destinations.pages_at_least(len(numbers), documents, request.cover)
        charge = allowance.reserve(rules, job_id, need, override=overridden_by is not None)
        if not charge.ok and charge.limit is not None:
            raise Rejected(
                destinations.quota_reason(tenant, charge.limit, charge.used, need, at_least=True),
                status=429,
                headers={"Retry-After": str(seconds_to_midnight())},
            )
        if charge.limit is not None and charge.used > charge.limit:
            broken.append(
                f"daily page quota of {charge.limit} passed ({charge.used} pages used today)"
            )
    if overridden_by is None:
        return None
    return f"override_policy by {overridden_by}: " + (
        "; ".join(broken) if broken else "no rule needed overriding"
    )


def submit(
    store: JobStore,
    settings: Settings,
    tenant: str,
    request: FaxRequest,
    uploads: list[Upload],
    home_sites: set[str],
    *,
    overridden_by: str | None = None,
) -> tuple[FaxStatus, bool]:
    """Store a new fax (or find the one its idempotency key names). Returns ``(fax, new)``.

    The caller starts rendering for a new fax (``Lifecycle.start``). ``overridden_by``: an
    administrator (who and which key) who submits past the destination policy and quota.
    """
    numbers, docs = validate(request, uploads, settings, home_sites)
    job_id = new_job_id()
    allowance = Allowance(
        store.r, destinations.FleetPolicy.from_settings(settings), settings.retention_seconds
    )
    replay = bool(
        request.idempotency_key and store.r.exists(idem_key(tenant, request.idempotency_key))
    )
    note = admit(allowance, tenant, request, numbers, len(uploads), job_id, overridden_by, replay)
    try:
        stored, new = _store(store, settings, tenant, request, uploads, numbers, docs, job_id, note)
    except BaseException:
        allowance.release(job_id)
        raise
    if not new:
        allowance.release(job_id)
    return stored, new


def _store(
    store: JobStore,
    settings: Settings,
    tenant: str,
    request: FaxRequest,
    uploads: list[Upload],
    numbers: list[str],
    docs: list[DocumentInfo],
    job_id: str,
    note: str | None,
) -> tuple[FaxStatus, bool]:
    created = now()
    check_schedule(request, settings, created)
    kill_after = request.kill_after_seconds or settings.kill_after_seconds
    start = max(created, request.send_after) if request.send_after else created
    fax = FaxStatus(
        id=job_id,
        tenant=tenant,
        state=JobState.SUBMITTED,
        priority=request.priority,
        resolution=request.resolution,
        user=request.user,
        sender=request.sender,
        home_site=request.home_site or settings.site,
        created_at=created,
        send_after=request.send_after,
        kill_at=start + timedelta(seconds=kill_after),
        idempotency_key=request.idempotency_key,
        tags=request.tags,
        notify=request.notify,
        documents=docs,
        recipients=[RecipientStatus(index=i, number=n) for i, n in enumerate(numbers)],
        cover=cover_fields(request, numbers),
        header=request.header,
    )
    with store.r.pipeline(transaction=False) as pipe:
        for i, upload in enumerate(uploads):
            pipe.set(keys.document(fax.id, i), upload.data, ex=settings.retention_seconds)
        pipe.execute()
    stored, new = store.create(
        fax, request.idempotency_key, watch_after=settings.render_watch_seconds, note=note
    )
    if not new:
        store.delete_documents(fax.id, len(uploads))
    return stored, new
