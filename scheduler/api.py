"""The HTTP API (FastAPI): submit, look up, list, cancel, alter, requeue and resolve faxes;
see the sites.

Run: ``uvicorn scheduler.api:app``. ``/v1/sites`` and ``/v1/groups`` (site and group
administration, cost tables, live site state) are relayed over HTTP to the routing
service's admin API (``FAXFLEET_ROUTING_ADMIN_URL``), which checks the keys itself; the
public API stays the one URL users know. Authentication is a tenant's API key in the
``X-API-Key`` header (the configuration holds hashes, compared in constant time; a tenant
may have several keys while one is rotated: ``faxfleet/credentials.py``); a tenant only
ever sees its own faxes (another tenant's fax is a 404, not a 403, so ids leak nothing),
an admin key every tenant's.

The module is long because every public endpoint is here, beside the access rules
(:func:`visible`) and the request limits they share; the web console (``/console``,
``scheduler/console/``) calls the same functions rather than its own copies.
"""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import httpx
import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from faxfleet import destinations, health, heartbeat, keys, metrics
from faxfleet.apidocs import serve_docs
from faxfleet.credentials import StoredKey, require_deployable
from faxfleet.header import draw_header, header_text
from faxfleet.messages import (
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    FaxRequest,
    FaxStatus,
    InboundFax,
    JobState,
    NotifyTarget,
)
from faxfleet.numbers import InvalidNumber, to_e164
from faxfleet.redis_conn import NotReplicated
from faxfleet.settings import get_settings
from scheduler import intake, policy_api, reports_api, states, tasks
from scheduler.accounting import stores
from scheduler.inbound import UnknownInbound
from scheduler.lifecycle import Alteration, BadAlteration, NotAlterable, NotResolvable
from scheduler.store import UnknownJob

settings = get_settings()

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body outside submissions and the relayed site administration."""
FORM_OVERHEAD_BYTES = 1024 * 1024
"""What a submission's body may hold beside its documents (fields, multipart framing)."""
MAX_FIELD_BYTES = 1024 * 1024
"""Largest text field of a submission (the ``fax`` JSON field included)."""
SUBMISSION_BODY_BYTES = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
MAX_FORM_FIELDS = settings.max_recipients + 50
"""Text fields of a submission: one per recipient (``to`` repeated) and room for the rest."""

app = FastAPI(
    # Every request body is counted as it is read, whatever its headers say (chunked, no
    # or a false Content-Length), and refused with a 413 once past its route's limit.
    max_body_size=MAX_BODY_BYTES,
    docs_url=None,  # served from local files below (faxfleet/apidocs.py)
    redoc_url=None,
    title="faxfleet",
    version="0.1.0",
    summary="Send faxes through a fleet of fax servers.",
    description=(
        "Submit faxes as multipart uploads, follow them recipient by recipient, cancel "
        "them, resolve those whose outcome is uncertain. Priorities run from 0 (bulk) to "
        "9 (most urgent); 5 is normal. Every request needs the tenant's key in the "
        "`X-API-Key` header.\n\n"
        "`/v1/sites` and `/v1/groups` (sites with their live lines, groups, cost tables; "
        "changes need an admin key) are relayed to the routing service's admin API and "
        "documented there (`/docs` of `routing.admin`).\n\n"
        "`/metrics` gives the fleet's fax metrics in Prometheus's text format "
        "(docs/metrics.md)."
    ),
)
serve_docs(app)


class ErrorBody(BaseModel):
    detail: str


def _key(x_api_key: str | None) -> StoredKey:
    """The configured key presented (hashed, compared in constant time), or 401."""
    if not x_api_key:
        raise HTTPException(401, "missing X-API-Key header")
    key = settings.keys.match(x_api_key)
    if key is None:
        raise HTTPException(401, "unknown API key")
    return key


def tenant_of(x_api_key: Annotated[str | None, Header()] = None) -> str:
    tenant = _key(x_api_key).tenant
    if tenant is None:  # an admin key acts as no tenant here
        raise HTTPException(401, "unknown API key")
    return tenant


Tenant = Annotated[str, Depends(tenant_of)]

_FORM_SCALARS = {
    "priority",
    "sender",
    "user",
    "home_site",
    "send_after",
    "idempotency_key",
    "resolution",
    "kill_after_seconds",
    "cover",
    "subject",
    "comment",
    "recipient_name",
    "sender_company",
    "sender_fax",
    "header",
    "tenant",
    "override_policy",
}


def _request_from_form(form: FormData) -> FaxRequest:
    """Build the request from a ``fax`` JSON field or from plain form fields."""
    for key, value in form.multi_items():
        if key != "documents" and isinstance(value, UploadFile):
            raise intake.Rejected(f"the {key!r} field must be text, not a file")
    if "fax" in form:
        # Strict: a JSON true is no priority 1, a "5" no 5; a time is an ISO 8601 string.
        try:
            return FaxRequest.model_validate_json(str(form["fax"]), strict=True)
        except ValidationError as exc:
            raise intake.Rejected(_first_error(exc, "the 'fax' field")) from None
    else:
        data = {k: form[k] for k in _FORM_SCALARS if k in form and form[k] != ""}
        # Repeated fields or one comma-separated field: "to=+331...,+1212...".
        data["to"] = [n.strip() for v in form.getlist("to") for n in str(v).split(",") if n.strip()]
        data.setdefault("priority", PRIORITY_DEFAULT)
        notify: dict[str, str] = {}
        if form.get("notify_email"):
            notify["email"] = str(form["notify_email"])
        if form.get("callback_url"):
            notify["callback_url"] = str(form["callback_url"])
        data["notify"] = notify
        if form.get("tags"):
            tags = {}
            for item in str(form["tags"]).split(","):
                if item.strip():
                    k, _, v = item.partition("=")
                    tags[k.strip()] = v.strip()
            data["tags"] = tags
    try:
        return FaxRequest.model_validate(data)
    except ValidationError as exc:
        raise intake.Rejected(_first_error(exc, "request")) from None


def _first_error(exc: ValidationError, whole: str) -> str:
    """The first problem pydantic found, as ``field: reason``."""
    first = exc.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "json_invalid":
        return f"{whole} is not valid JSON: {msg.removeprefix('Invalid JSON: ')}"
    if not first["loc"] and first["type"] == "model_type":
        return f"{whole} must be a JSON object"
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {msg}"


async def read_submission(request: Request) -> FormData:
    """The submission's multipart form, parsed as it arrives (documents spooled to disk
    past 1 MiB each), refused once the body passes its limit whatever its headers say
    (chunked, no or a false Content-Length), or once a part passes a limit."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "multipart/form-data":
        raise intake.Rejected(
            "a fax is sent as multipart/form-data: the documents as files named 'documents' "
            "and the other fields beside them (or all of them as JSON in a field named 'fax')",
            415,
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > SUBMISSION_BODY_BYTES:
        raise _too_large()
    parser = MultiPartParser(
        request.headers,
        _counted(request),
        max_files=settings.max_documents,
        max_fields=MAX_FORM_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise _form_refusal(exc.message) from None
    except ClientDisconnect:
        raise intake.Rejected("the client went away during the upload", 400) from None


async def _counted(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives, stopped once it passes :data:`SUBMISSION_BODY_BYTES`."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > SUBMISSION_BODY_BYTES:
            raise _too_large()
        yield chunk


def _too_large() -> intake.Rejected:
    return intake.Rejected(
        f"upload too large: more than {SUBMISSION_BODY_BYTES} bytes (the documents may "
        f"total {settings.max_upload_bytes} bytes, the other fields 1 MiB)",
        413,
    )


def _form_refusal(message: str) -> intake.Rejected:
    """A multipart parser's refusal in faxfleet's words (its own as a last resort)."""
    if message.startswith("Too many files"):
        limit = settings.max_documents
        return intake.Rejected(f"too many documents: more than {limit} (limit {limit})")
    if message.startswith("Too many fields"):
        return intake.Rejected(
            f"too many form fields: more than {MAX_FORM_FIELDS} (limit {MAX_FORM_FIELDS})"
        )
    if message.startswith("Part exceeded maximum size"):
        return intake.Rejected(f"a form field is larger than {MAX_FIELD_BYTES} bytes", 413)
    return intake.Rejected(f"malformed multipart body: {message}", 400)


@app.exception_handler(intake.Rejected)
async def _rejected(_: Request, exc: intake.Rejected) -> JSONResponse:
    return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=exc.headers)


@app.exception_handler(NotReplicated)
async def _not_replicated(_: Request, exc: NotReplicated) -> JSONResponse:
    """No Redis replica confirmed the fax in time (Sentinel): not durable, so no 201."""
    return JSONResponse({"detail": exc.reason}, status_code=503, headers={"Retry-After": "1"})


@app.post(
    "/v1/faxes",
    status_code=201,
    response_model=FaxStatus,
    responses={
        200: {"description": "Idempotent replay: the original fax"},
        400: {"model": ErrorBody, "description": "Malformed multipart body"},
        403: {"model": ErrorBody, "description": "override_policy or tenant with a tenant key"},
        413: {"model": ErrorBody, "description": "Upload or one text field too large"},
        415: {
            "model": ErrorBody,
            "description": "Not multipart/form-data, or a document of an unsupported type",
        },
        422: {"model": ErrorBody, "description": "Invalid, or a destination the policy bars"},
        429: {"model": ErrorBody, "description": "The tenant's daily page quota is used up"},
        503: {"model": ErrorBody, "description": "Not stored durably (no Redis replica)"},
    },
    # Counted by read_submission instead, to answer with a reason (the framework's limiter
    # replaces any answer to a request that declares a body over its limit).
    max_body_size=sys.maxsize,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["documents", "to"],
                        "properties": {
                            "documents": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "to": {"type": "array", "items": {"type": "string"}},
                            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
                            "sender": {"type": "string"},
                            "user": {"type": "string"},
                            "home_site": {"type": "string"},
                            "send_after": {
                                "type": "string",
                                "format": "date-time",
                                "description": "with its zone; at most the retention less "
                                "the kill time ahead (6 days 21 hours by default)",
                            },
                            "idempotency_key": {"type": "string"},
                            "notify_email": {"type": "string", "format": "email"},
                            "callback_url": {"type": "string"},
                            "tags": {
                                "type": "string",
                                "description": "k=v,k2=v2: at most 50, keys of 1-64 "
                                "characters, values up to 256",
                            },
                            "resolution": {"type": "string", "enum": ["standard", "fine"]},
                            "cover": {"type": "boolean", "description": "add a cover page"},
                            "subject": {"type": "string"},
                            "comment": {"type": "string"},
                            "recipient_name": {"type": "string"},
                            "sender_company": {"type": "string"},
                            "sender_fax": {"type": "string"},
                            "header": {"type": "boolean", "default": True},
                            "tenant": {
                                "type": "string",
                                "description": "admin keys: the tenant the fax is for",
                            },
                            "override_policy": {
                                "type": "boolean",
                                "description": "admin keys: pass the destination policy "
                                "and the daily page quota (recorded in the history)",
                            },
                            "fax": {
                                "type": "string",
                                "description": "all fields above as one JSON object",
                            },
                        },
                    }
                }
            },
            "required": True,
        }
    },
)
async def submit_fax(
    request: Request, response: Response, x_api_key: Annotated[str | None, Header()] = None
) -> FaxStatus:
    """Submit a fax: one or more documents (PDF, text, PNG, JPEG, TIFF) to one or more
    numbers. A repeated ``idempotency_key`` returns the original fax with status 200.

    Destinations the policy bars (premium-rate and other number types, regions) are a 422
    naming each number, its type and region and the rule; a fax past the tenant's daily
    page quota is a 429 with the quota and what is used (docs/administration.md). An admin
    key submits for the ``tenant`` it names, and may pass both with ``override_policy``."""
    caller = caller_of(x_api_key)
    form = await read_submission(request)
    fax, new = await submit_form(caller, form)
    if not new:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return fax


async def submit_form(caller: Caller, form: FormData) -> tuple[FaxStatus, bool]:
    """A submission from its parsed form (closed here): the fax, and whether it is new
    (False: an idempotent replay). Raises :class:`intake.Rejected` or
    :class:`HTTPException` with the reason. Shared by ``POST /v1/faxes`` and the web
    console's send page."""
    try:
        fax_request = _request_from_form(form)
        tenant, overridden_by = _submitter(caller, fax_request)
        uploads = []
        for item in form.getlist("documents"):
            if not isinstance(item, UploadFile):
                raise intake.Rejected("'documents' must be file uploads")
            uploads.append(intake.Upload(item.filename or "document", await item.read()))
    finally:
        await form.close()
    return await run_in_threadpool(_store_and_start, tenant, fax_request, uploads, overridden_by)


def _submitter(caller: Caller, fax_request: FaxRequest) -> tuple[str, str | None]:
    """The tenant a submission is for, and the admin who overrides its policy, if one does.

    A tenant key submits for its own tenant, never with ``override_policy``; an admin key
    names the tenant (a known one)."""
    if caller.tenant is not None:
        if fax_request.override_policy:
            raise HTTPException(403, "override_policy needs an admin key")
        if fax_request.tenant not in (None, caller.tenant):
            raise HTTPException(403, "a tenant key submits for its own tenant only")
        return caller.tenant, None
    if not fax_request.tenant:
        raise intake.Rejected("an admin key submits for a tenant: name it in 'tenant'")
    if fax_request.tenant not in settings.keys.tenants:
        raise intake.Rejected(f"tenant: no tenant {fax_request.tenant!r}")
    by = caller.describe(fax_request.user) if fax_request.override_policy else None
    return fax_request.tenant, by


def _store_and_start(
    tenant: str,
    fax_request: FaxRequest,
    uploads: list[intake.Upload],
    overridden_by: str | None = None,
) -> tuple[FaxStatus, bool]:
    """Blocking part of a submission (Redis, Celery), run off the event loop."""
    fax, new = intake.submit(
        tasks.store(),
        settings,
        tenant,
        fax_request,
        uploads,
        tasks.home_sites(),
        overridden_by=overridden_by,
    )
    if new:
        tasks.apply(fax.id, tasks.machine().start)
        fax = tasks.store().get(fax.id)
    return fax, new


@dataclass(frozen=True)
class Caller:
    """Who calls: a tenant (its key) or an administrator (``tenant`` None, an admin key)."""

    tenant: str | None
    key_id: str
    """The key's public id (never the key itself), to tell keys apart in histories."""

    def describe(self, user: str | None) -> str:
        who = "admin" if self.tenant is None else f"tenant {self.tenant}"
        about = [f"user {user}"] if user else []
        return f"{who} ({', '.join([*about, f'key {self.key_id}'])})"


def caller_of(x_api_key: Annotated[str | None, Header()] = None) -> Caller:
    """A tenant key acts for its tenant; an admin key for every tenant."""
    key = _key(x_api_key)
    return Caller(key.tenant, key.id)


def _own(job_id: str, tenant: str, history: bool = False) -> FaxStatus:
    try:
        fax = tasks.store().get(job_id, history=history)
    except UnknownJob:
        raise HTTPException(404, f"no fax {job_id}") from None
    if fax.tenant != tenant:
        raise HTTPException(404, f"no fax {job_id}")
    return fax


def visible(job_id: str, caller: Caller, history: bool = False) -> FaxStatus:
    """The fax, if ``caller`` may see it: a tenant its own (another's is a 404, as an
    unknown one), an admin key any tenant's."""
    if caller.tenant is not None:
        return _own(job_id, caller.tenant, history)
    return _any(job_id, history)


AnyCaller = Annotated[Caller, Depends(caller_of)]


@app.get("/v1/faxes/{job_id}", response_model=FaxStatus, responses={404: {"model": ErrorBody}})
def get_fax(job_id: str, caller: AnyCaller) -> FaxStatus:
    """One fax with per-recipient status and its full transition history (an admin key:
    any tenant's)."""
    return visible(job_id, caller, history=True)


@app.get(
    "/v1/faxes",
    response_model=list[FaxStatus],
    responses={403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def list_faxes(
    caller: AnyCaller,
    state: JobState | None = None,
    site: str | None = None,
    user: str | None = None,
    limit: int = 50,
    all_tenants: Annotated[bool, Query(alias="all")] = False,
    tenant: str | None = None,
) -> list[FaxStatus]:
    """The tenant's faxes, newest first (``state`` matches the fax or any recipient).
    An admin key lists every tenant's with ``all=true``, or one tenant's with
    ``tenant``; a tenant key only its own."""
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be between 1 and 1000")
    store = tasks.store()
    if caller.tenant is not None:
        if all_tenants or tenant not in (None, caller.tenant):
            raise HTTPException(403, "a tenant key lists its own faxes only")
        return store.list(caller.tenant, state=state, site=site, user=user, limit=limit)
    if tenant is not None:
        return store.list(tenant, state=state, site=site, user=user, limit=limit)
    if not all_tenants:
        raise HTTPException(
            422, "an admin key lists every tenant's faxes (all=true) or one tenant's (tenant=…)"
        )
    return store.list_all(state=state, site=site, user=user, limit=limit)


@app.post(
    "/v1/faxes/{job_id}/cancel",
    status_code=202,
    response_model=FaxStatus,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def cancel_fax(job_id: str, caller: AnyCaller) -> FaxStatus:
    """Cancel every recipient not yet settled. Recipients on a line hang up at the next
    page boundary and then show ``cancelled``. An admin key cancels any tenant's fax."""
    fax = visible(job_id, caller)
    if all(states.is_final(r.state) for r in fax.recipients):
        raise HTTPException(409, f"fax {job_id} is already {fax.state.value}")
    tasks.set_cancel_flag(job_id)
    tasks.apply(job_id, tasks.machine().cancel)
    return _any(job_id, history=True)


class ResolveRequest(BaseModel):
    """An operator's decision on a fax whose outcome is uncertain."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["sent", "resend"]
    """``sent``: the far end got the whole fax (the recipient becomes ``done``);
    ``resend``: send it again, from the first page the far end did not confirm."""
    recipient: int | None = Field(None, ge=0)
    """The recipient (index); none: every recipient whose outcome is uncertain."""
    from_start: bool = False
    """With ``resend``: from page 1 rather than the first unconfirmed page."""
    note: str | None = Field(None, max_length=500)
    """Why (kept in the history)."""
    user: str | None = Field(None, max_length=100)
    """Who decided, beside the key (kept in the history)."""


@app.post(
    "/v1/faxes/{job_id}/resolve",
    response_model=FaxStatus,
    responses={
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "The recipient's outcome is not uncertain"},
        422: {"model": ErrorBody},
    },
)
def resolve_fax(
    job_id: str, body: ResolveRequest, caller: Annotated[Caller, Depends(caller_of)]
) -> FaxStatus:
    """Settle a fax whose outcome is uncertain (its site went silent during the call):
    ``sent`` confirms the far end got it (the recipient becomes ``done``, every page
    counted as confirmed by the operator); ``resend`` sends it again, resuming at the first
    unconfirmed page (``from_start``: page 1). A tenant resolves its own faxes, an admin key
    any tenant's; the history records who decided. Anything not ``outcome_uncertain`` is a
    409 naming its state."""
    fax = _own(job_id, caller.tenant) if caller.tenant is not None else _any(job_id)
    if body.outcome == "sent" and body.from_start:
        raise HTTPException(422, "from_start applies to outcome 'resend' only")
    if body.recipient is not None and body.recipient >= len(fax.recipients):
        raise HTTPException(
            422, f"fax {job_id} has no recipient {body.recipient} ({len(fax.recipients)} in all)"
        )
    by = caller.describe(body.user)
    machine = tasks.machine()
    try:
        tasks.apply(
            job_id,
            lambda d: machine.resolve(
                d, body.recipient, body.outcome, by, body.note, from_start=body.from_start
            ),
        )
    except NotResolvable as exc:
        raise HTTPException(409, str(exc)) from None
    return _any(job_id, history=True)


class AlterRequest(BaseModel):
    """What to change on a fax not yet on a line; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    priority: StrictInt | None = Field(None, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    """0 (bulk) .. 9 (most urgent): reorders the fax among those waiting for a line."""
    send_after: datetime | None = None
    """Send not before this time (ISO 8601 with its zone); ``null``: now. A fax waiting
    for a line and postponed is taken back first (202)."""
    kill_after_seconds: float | None = Field(None, gt=0, le=30 * 86400)
    """Give up this long after the fax's start (``send_after``, else submission)."""
    numbers: dict[str, str] = Field(default_factory=dict, max_length=100)
    """A recipient's current number -> its new number (any format ``to`` takes)."""
    override_policy: bool = False
    """Admin keys: a new number the tenant's destination policy bars is taken anyway
    (recorded in the history)."""
    note: str | None = Field(None, max_length=500)
    """Why (kept in the history)."""
    user: str | None = Field(None, max_length=100)
    """Who changes it, beside the key (kept in the history)."""

    @field_validator("priority", mode="before")
    @classmethod
    def _not_a_flag(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("priority is a whole number from 0 to 9")
        return value

    @field_validator("kill_after_seconds", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("kill_after_seconds is a number of seconds")
        return value

    @field_validator("send_after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError(
                "send_after needs a time zone: end it with Z (UTC) or an offset like +01:00"
            )
        return value.astimezone(UTC) if value is not None else None

    @field_validator("note", "user")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("no control characters (line breaks, tabs, ...) in this field")
        return value


def _new_numbers(
    fax: FaxStatus, body: AlterRequest, caller: Caller, by: str
) -> tuple[dict[str, str], str | None]:
    """The number changes as E.164 (current -> new), checked as at submission: valid
    numbers, and the tenant's destination policy (an admin key may override it: the
    returned note says so for the history)."""
    region = settings.default_region
    changes: dict[str, str] = {}
    for old, new in body.numbers.items():
        try:
            current = to_e164(old, region)
        except InvalidNumber:
            current = old.strip()
        try:
            changes[current] = to_e164(new, region)
        except InvalidNumber as exc:
            raise HTTPException(422, f"numbers[{old!r}]: {exc}") from None
    targets = list(changes.values())
    barred = destinations.check_all(targets, tasks.allowance().rules(fax.tenant))
    if not barred:
        return changes, None
    reasons = "; ".join(f"numbers[{targets[i]!r}]: {refusal.reason}" for i, refusal in barred)
    if not body.override_policy:
        raise HTTPException(422, reasons)
    return changes, f"override_policy by {by}: {reasons}"


@app.patch(
    "/v1/faxes/{job_id}",
    response_model=FaxStatus,
    responses={
        202: {"description": "A change waits for routing to take the fax back (`pending`)"},
        403: {"model": ErrorBody, "description": "override_policy with a tenant key"},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "On a line, settled, or a cover page"},
        422: {"model": ErrorBody},
    },
)
def alter_fax(job_id: str, body: AlterRequest, caller: AnyCaller, response: Response) -> FaxStatus:
    """Change a fax not yet on a line (``submitted`` .. ``queued``, ``retry_scheduled``),
    as HylaFAX's ``faxalter`` does: its priority (it moves in the queue at once), its
    ``send_after`` and kill time, a recipient's number. A new number is checked as at
    submission (and by the tenant's destination policy). A recipient waiting for a line
    whose number changes, or that is postponed, is first taken back by routing: the answer
    is then 202 with the change under ``pending``; it applies within a moment, or not at
    all if a site started the call meanwhile (the history says which). The history
    records who changed what. A tenant alters its own faxes, an admin key any tenant's."""
    fax = visible(job_id, caller)
    by = caller.describe(body.user)
    values = {
        "priority": body.priority,
        "send_after": "now",  # null means now: a change
        "kill_after_seconds": body.kill_after_seconds,
        "numbers": body.numbers or None,
    }
    if not any(values[f] is not None for f in values if f in body.model_fields_set):
        raise HTTPException(
            422, "nothing to change: give priority, send_after, kill_after_seconds or numbers"
        )
    if body.override_policy and caller.tenant is not None:
        raise HTTPException(403, "override_policy needs an admin key")
    numbers, overridden = _new_numbers(fax, body, caller, by) if body.numbers else ({}, None)
    change = Alteration(
        priority=body.priority,
        send_after=body.send_after,
        send_after_set="send_after" in body.model_fields_set,
        kill_after_seconds=body.kill_after_seconds,
        numbers=numbers,
        note="; ".join(x for x in (body.note, overridden) if x) or None,
    )
    machine = tasks.machine()
    try:
        tasks.apply(job_id, lambda d: machine.alter(d, change, by))
    except NotAlterable as exc:
        raise HTTPException(409, str(exc)) from None
    except BadAlteration as exc:
        raise HTTPException(422, str(exc)) from None
    altered = _any(job_id, history=True)
    if any(r.pending is not None for r in altered.recipients):
        response.status_code = 202
    return altered


class RetryRequest(BaseModel):
    """Send again a fax that failed, or whose outcome is uncertain."""

    model_config = ConfigDict(extra="forbid")

    recipient: int | None = Field(None, ge=0)
    """The recipient (index); none: every failed or uncertain one."""
    from_start: bool = False
    """From page 1 rather than the first page the far end did not confirm."""
    kill_after_seconds: float | None = Field(None, gt=0, le=30 * 86400)
    """Keep trying at least this long from now (default: the fax's own kill time's
    length)."""
    note: str | None = Field(None, max_length=500)
    user: str | None = Field(None, max_length=100)


@app.post(
    "/v1/faxes/{job_id}/retry",
    response_model=FaxStatus,
    responses={
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "Nothing failed or uncertain, or no pages"},
        422: {"model": ErrorBody},
    },
)
def retry_fax(job_id: str, caller: AnyCaller, body: RetryRequest | None = None) -> FaxStatus:
    """Requeue a failed or ``outcome_uncertain`` fax (``faxfleet requeue``): a new
    attempt, from the first page the far end did not confirm (``from_start``: page 1),
    with fresh dial and try counters and at least its kill time's length to go. An
    uncertain recipient is resent exactly as ``resolve`` with ``resend`` does. The user
    is notified of the new outcome. A tenant requeues its own faxes, an admin key any
    tenant's; the history records who."""
    body = body or RetryRequest()
    fax = visible(job_id, caller)
    if body.recipient is not None and body.recipient >= len(fax.recipients):
        raise HTTPException(
            422, f"fax {job_id} has no recipient {body.recipient} ({len(fax.recipients)} in all)"
        )
    if fax.pages and not tasks.store().r.exists(keys.pages(job_id)):
        raise HTTPException(409, f"fax {job_id}'s rendered pages are no longer kept")
    by = caller.describe(body.user)
    machine = tasks.machine()
    try:
        tasks.apply(
            job_id,
            lambda d: machine.requeue(
                d,
                body.recipient,
                by,
                body.note,
                from_start=body.from_start,
                kill_after_seconds=body.kill_after_seconds,
            ),
        )
    except NotResolvable as exc:
        raise HTTPException(409, str(exc)) from None
    except BadAlteration as exc:
        raise HTTPException(422, str(exc)) from None
    return _any(job_id, history=True)


def _any(job_id: str, history: bool = False) -> FaxStatus:
    try:
        return tasks.store().get(job_id, history=history)
    except UnknownJob:
        raise HTTPException(404, f"no fax {job_id}") from None


_NOT_RENDERED = {JobState.SUBMITTED, JobState.RENDERING}


def page_png(tiff: bytes, header: str | None = None) -> bytes:
    """A fax page TIFF as a PNG with (nearly) square pixels: rows repeated by the whole
    ratio of horizontal to vertical dpi, so standard-resolution rows are doubled.

    ``header``: the header line drawn in the page's top band first, exactly as the
    sending site stamps it (:func:`faxfleet.header.draw_header`)."""
    with Image.open(io.BytesIO(tiff)) as page:
        page.load()
        dpi = page.info.get("dpi") or (204, 196)
        image = page.convert("1") if page.mode != "1" else page.copy()
    x_dpi, y_dpi = float(dpi[0]), float(dpi[1])
    if header is not None:
        draw_header(image, header, (x_dpi, y_dpi))
    repeat = round(x_dpi / y_dpi) if x_dpi > 0 and y_dpi > 0 else 1
    if repeat > 1:
        image = image.resize((image.width, image.height * repeat), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(x_dpi, x_dpi), optimize=True)
    return out.getvalue()


@app.get(
    "/v1/faxes/{job_id}/pages/{page}.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The page as the recipient gets it"},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "The fax is not rendered yet"},
    },
)
def preview_page(job_id: str, page: int, tenant: Tenant, header: bool = True) -> Response:
    """Page ``page`` (1-based; the cover page is page 1) of a rendered fax as a PNG, as
    the recipient gets it: with the header line the sending site stamps during the call
    (the fax's sender, the date and time, here those of the preview, and page n/N),
    unless the fax was sent without one. ``header=false``: the page as rendered."""
    return Response(rendered_page(_own(job_id, tenant), page, header), media_type="image/png")


def rendered_page(fax: FaxStatus, page: int, header: bool = True) -> bytes:
    """Page ``page`` of ``fax`` as a PNG (with its header line unless ``header`` is
    False), or the HTTP error saying why not (shared with the web console, which checks
    who may see the fax first)."""
    job_id = fax.id
    if fax.pages is None:
        if fax.state in _NOT_RENDERED:
            raise HTTPException(409, f"fax {job_id} is not rendered yet")
        raise HTTPException(404, f"fax {job_id} has no rendered pages")
    if not 1 <= page <= fax.pages:
        raise HTTPException(404, f"fax {job_id} has no page {page} (it has {fax.pages})")
    tiff = tasks.store().r.hget(keys.pages(job_id), str(page))
    if tiff is None:
        raise HTTPException(404, f"page {page} of fax {job_id} is no longer stored")
    line = None
    if header and fax.header:
        line = header_text(fax.sender, datetime.now().astimezone(), page, fax.pages)
    return page_png(tiff, line)


# -- received faxes ----------------------------------------------------------------------


def inbound_viewer(x_api_key: Annotated[str | None, Header()] = None) -> str | None:
    """Whose received faxes a key shows: a tenant key its tenant's, an admin key the
    unrouted ones (a fax no route matched belongs to no tenant yet)."""
    return _key(x_api_key).tenant


InboundViewer = Annotated[str | None, Depends(inbound_viewer)]


def _own_inbound(inbound_id: str, viewer: str | None) -> InboundFax:
    try:
        fax = tasks.inbound_store().get(inbound_id)
    except UnknownInbound:
        raise HTTPException(404, f"no received fax {inbound_id}") from None
    if fax.tenant != viewer:
        raise HTTPException(404, f"no received fax {inbound_id}")
    return fax


def _inbound_document(fax: InboundFax) -> bytes:
    if fax.pages == 0:
        raise HTTPException(404, f"received fax {fax.id} has no pages")
    document = tasks.inbound_store().document(fax.id)
    if document is None:
        raise HTTPException(404, f"received fax {fax.id} is no longer stored")
    return document


@app.get("/v1/inbound", response_model=list[InboundFax])
def list_inbound(viewer: InboundViewer, limit: int = 50) -> list[InboundFax]:
    """Faxes received for the tenant, newest first (with an admin key: the unrouted
    ones, whose called number matched no route)."""
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be between 1 and 1000")
    return tasks.inbound_store().list(viewer, limit=limit)


@app.get(
    "/v1/inbound/{inbound_id}.tiff",
    response_class=Response,
    responses={
        200: {"content": {"image/tiff": {}}, "description": "The whole fax, one page a frame"},
        404: {"model": ErrorBody},
    },
)
def inbound_tiff(inbound_id: str, viewer: InboundViewer) -> Response:
    """The received fax as one multi-page TIFF, pages as they came off the line."""
    fax = _own_inbound(inbound_id, viewer)
    return Response(
        _inbound_document(fax),
        media_type="image/tiff",
        headers={"Content-Disposition": f'attachment; filename="{fax.id}.tiff"'},
    )


@app.get(
    "/v1/inbound/{inbound_id}/pages/{page}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorBody}},
)
def inbound_preview(inbound_id: str, page: int, viewer: InboundViewer) -> Response:
    """Page ``page`` (1-based) of a received fax as a PNG with square pixels."""
    fax = _own_inbound(inbound_id, viewer)
    if not 1 <= page <= fax.pages:
        raise HTTPException(404, f"received fax {inbound_id} has no page {page}")
    return Response(page_png(_frame(_inbound_document(fax), page)), media_type="image/png")


def _frame(document: bytes, page: int) -> bytes:
    """Page ``page`` of a multi-page TIFF as a single-page TIFF (for :func:`page_png`)."""
    with Image.open(io.BytesIO(document)) as image:
        if page > getattr(image, "n_frames", 1):
            raise HTTPException(404, f"the stored fax has no page {page}")
        image.seek(page - 1)
        image.load()
        dpi = image.info.get("dpi") or (204, 196)
        out = io.BytesIO()
        image.save(out, format="TIFF", dpi=dpi)
    return out.getvalue()


@app.get(
    "/v1/inbound/{inbound_id}", response_model=InboundFax, responses={404: {"model": ErrorBody}}
)
def get_inbound(inbound_id: str, viewer: InboundViewer) -> InboundFax:
    """One received fax: who sent it (station id), the number and line it came in on,
    pages, whether it arrived whole, and what became of its notifications."""
    return _own_inbound(inbound_id, viewer)


# -- sites and groups: relayed to the routing service's admin API ----------------------

_FORWARD_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_FORWARD_HEADERS = ("content-type", "x-api-key")


async def _forward(request: Request) -> Response:
    """Relay a /v1/sites or /v1/groups request to the routing admin API (HTTP only: the
    scheduler never imports routing) and hand back its status, body and content type."""
    path = request.scope.get("raw_path") or request.url.path.encode()
    url = settings.routing_admin_url.rstrip("/") + path.decode("latin-1")
    if request.url.query:
        url += "?" + request.url.query
    headers = {h: request.headers[h] for h in _FORWARD_HEADERS if h in request.headers}
    body = await request.body()
    try:
        async with httpx.AsyncClient(timeout=30.0) as client:
            upstream = await client.request(request.method, url, headers=headers, content=body)
    except httpx.TimeoutException:
        return JSONResponse({"detail": "routing admin service timed out"}, status_code=504)
    except httpx.TransportError:
        return JSONResponse({"detail": "routing admin service unavailable"}, status_code=503)
    media_type = upstream.headers.get("content-type")
    return Response(upstream.content, status_code=upstream.status_code, media_type=media_type)


for _path in (
    "/v1/sites",
    "/v1/sites/{path:path}",
    "/v1/groups",
    "/v1/groups/{path:path}",
    "/v1/costs/{path:path}",
):
    app.add_api_route(
        _path,
        _forward,
        methods=_FORWARD_METHODS,
        include_in_schema=False,
        max_body_size=settings.max_upload_bytes,  # cost tables
    )

app.include_router(policy_api.router(caller_of, tasks.allowance))


def call_source() -> stores.CallSource:
    """Where call records are read: PostgreSQL when configured, else the Redis journal."""
    return stores.source(settings, tasks.store().r)


app.include_router(reports_api.router(caller_of, call_source))


@app.get("/healthz", response_model=health.Health, responses={503: {"model": health.Health}})
def healthz(response: Response) -> health.Health:
    """Whether the fleet can send (faxfleet/health.py): 503 with the problems when Redis
    is unreachable, no site has a line in service, a needed process kind has no live
    process, the dispatcher stopped, or faxes wait past their promise with lines free."""
    verdict = health.assess(health.snapshot(tasks.store().r))
    if not verdict.ok:
        response.status_code = 503
    return verdict


@app.get("/readyz")
def readyz(response: Response) -> dict[str, str]:
    """Whether this API node can take submissions (its Redis answers)."""
    try:
        tasks.store().r.ping()
    except redis.RedisError as exc:
        response.status_code = 503
        return {"status": "fail", "site": settings.site, "error": str(exc)}
    return {"status": "ok", "site": settings.site}


@app.get("/v1/fleet", response_model=health.Health, responses={401: {"model": ErrorBody}})
def fleet_health(_: Tenant) -> health.Health:
    """The fleet's health with what it is based on: sites with their held and leased
    faxes, live processes by kind, what waits and what is overdue."""
    return health.assess(health.snapshot(tasks.store().r))


_fleet_metrics = metrics.FleetCollector(lambda: tasks.store().r, settings.retention_seconds)


@app.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    """Fax metrics in Prometheus's text format: the whole fleet's faxes by state, faxes
    waiting per priority, each site's lines and held faxes (read from Redis now, so any
    API node tells the same), and what this API process counted (docs/metrics.md)."""
    return Response(metrics.exposition(_fleet_metrics), media_type=metrics.CONTENT_TYPE)


def _deployable() -> None:
    """Outside the demo, refuse to serve on the demo's keys or on plain ones."""
    require_deployable(settings, "keys")


def _beat() -> None:
    heartbeat.start(lambda: tasks.rt.redis, "api")


app.router.on_startup.append(_deployable)
app.router.on_startup.append(_beat)

# The web console (docs/console.md): pages under /console on this same app.
from scheduler.console import mount as _mount_console  # noqa: E402

_mount_console(app)


__all__ = ["NotifyTarget", "app"]
