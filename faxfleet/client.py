"""The Python client: submit and follow faxes through one or more API nodes.

    from faxfleet.client import FaxClient

    with FaxClient(["http://api-1:8040", "http://api-2:8040"], api_key="...") as fax:
        sent = fax.send(["invoice.pdf"], to="+33142685300", priority=7)
        final = fax.wait(sent.id)

Failover: a request that cannot reach a node (connection refused, timeout, 502/503/504)
is tried on the next one. ``send`` always carries an idempotency key (one is generated
when the caller gives none), so a submission retried on another node after an unclear
failure is still one fax.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

import httpx

from faxfleet.accounting import CallRecord
from faxfleet.messages import PRIORITY_DEFAULT, SETTLED_STATES, FaxStatus, InboundFax, JobState
from faxfleet.reports import CostReport
from faxfleet.settings import get_settings

Document = str | Path | bytes | tuple[str, bytes]

_RETRY_STATUS = {502, 503, 504}


class FaxError(Exception):
    """The API refused a request; ``status`` and ``reason`` say why, ``body`` is the
    decoded JSON error body when there was one (e.g. a cost table's line errors)."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class Unreachable(FaxError):
    """No API node answered."""


class ApiClient:
    """Transport shared by the API clients: a key in ``X-API-Key`` and failover between
    API nodes (connection errors, timeouts and 502/503/504 move on to the next node)."""

    def __init__(
        self, urls: str | Sequence[str] | None, key: str, *, timeout: float = 30.0
    ) -> None:
        if urls is None:
            urls = get_settings().api_url_list
        elif isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise ValueError("at least one API URL is required")
        self.urls = [u.rstrip("/") for u in urls]
        self._http = httpx.Client(timeout=timeout, headers={"X-API-Key": key})
        self._current = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        errors: list[str] = []
        for step in range(len(self.urls)):
            index = (self._current + step) % len(self.urls)
            url = self.urls[index] + path
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                errors.append(f"{self.urls[index]}: {exc.__class__.__name__}")
                continue
            if response.status_code in _RETRY_STATUS:
                reason = _reason(response)[0]
                errors.append(f"{self.urls[index]}: HTTP {response.status_code} {reason}".strip())
                continue
            self._current = index
            if response.status_code >= 400:
                reason, body = _reason(response)
                raise FaxError(response.status_code, reason, body)
            return response
        raise Unreachable(503, "no API node answered: " + "; ".join(errors))


def _report_params(
    start: str | None, end: str | None, tenant: str | None, **more: str
) -> dict[str, str]:
    given = {"from": start, "to": end, "tenant": tenant, **more}
    return {k: v for k, v in given.items() if v is not None}


def _reason(response: httpx.Response) -> tuple[str, Any]:
    """The ``detail`` of an error response (as text) and its decoded JSON body."""
    try:
        body = response.json()
    except ValueError:
        return response.text, None
    reason = body.get("detail", response.text) if isinstance(body, dict) else response.text
    if not isinstance(reason, str):
        reason = json.dumps(reason)
    return reason, body


class FaxClient(ApiClient):
    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.api_key = api_key or get_settings().api_key
        super().__init__(urls, self.api_key, timeout=timeout)

    # -- faxes --------------------------------------------------------------------------

    def send(
        self,
        documents: Document | Iterable[Document],
        to: str | Sequence[str],
        *,
        priority: int = PRIORITY_DEFAULT,
        sender: str | None = None,
        user: str | None = None,
        home_site: str | None = None,
        send_after: datetime | None = None,
        idempotency_key: str | None = None,
        notify_email: str | None = None,
        callback_url: str | None = None,
        tags: dict[str, str] | None = None,
        resolution: str = "fine",
        cover: bool = False,
        subject: str | None = None,
        comment: str | None = None,
        recipient_name: str | None = None,
        sender_company: str | None = None,
        sender_fax: str | None = None,
        cover_fields: dict[str, str] | None = None,
        header: bool = True,
    ) -> FaxStatus:
        """Submit a fax. Documents are paths, bytes or ``(name, bytes)`` pairs.

        ``cover`` puts a cover page first (``subject``, ``comment``, ``recipient_name``,
        ``sender_company``, ``sender_fax`` and ``cover_fields`` fill it); ``header`` stamps
        the header line on every page as it is sent."""
        if isinstance(documents, str | Path | bytes | tuple):
            documents = [documents]
        files = [("documents", _file(doc)) for doc in documents]
        body: dict[str, Any] = {
            "to": [to] if isinstance(to, str) else list(to),
            "priority": priority,
            "idempotency_key": idempotency_key or "client-" + secrets.token_hex(12),
            "notify": {"email": notify_email, "callback_url": callback_url},
            "tags": tags or {},
            "resolution": resolution,
        }
        if cover:
            body["cover"] = True
        if not header:
            body["header"] = False
        if cover_fields:
            body["cover_fields"] = cover_fields
        optional = {
            "sender": sender,
            "user": user,
            "home_site": home_site,
            "subject": subject,
            "comment": comment,
            "recipient_name": recipient_name,
            "sender_company": sender_company,
            "sender_fax": sender_fax,
        }
        for key, value in optional.items():
            if value is not None:
                body[key] = value
        if send_after is not None:
            body["send_after"] = send_after.isoformat()
        response = self._request("POST", "/v1/faxes", files=files, data={"fax": json.dumps(body)})
        return FaxStatus.model_validate_json(response.content)

    def preview(self, fax_id: str, page: int = 1, *, header: bool = True) -> bytes:
        """Page ``page`` of a rendered fax as PNG bytes (square pixels), with the header
        line the sending site stamps (``header=False``: the page as rendered)."""
        params = None if header else {"header": "false"}
        return self._request("GET", f"/v1/faxes/{fax_id}/pages/{page}.png", params=params).content

    def get(self, fax_id: str) -> FaxStatus:
        return FaxStatus.model_validate_json(self._request("GET", f"/v1/faxes/{fax_id}").content)

    def list(
        self,
        *,
        state: JobState | str | None = None,
        site: str | None = None,
        user: str | None = None,
        limit: int = 50,
        all_tenants: bool = False,
        tenant: str | None = None,
    ) -> list[FaxStatus]:
        """The newest faxes. With an admin key: every tenant's (``all_tenants``) or one
        ``tenant``'s."""
        wanted = {"state": state, "site": site, "user": user, "tenant": tenant}
        params = {k: str(v) for k, v in wanted.items() if v}
        params["limit"] = str(limit)
        if all_tenants:
            params["all"] = "true"
        data = self._request("GET", "/v1/faxes", params=params).json()
        return [FaxStatus.model_validate(item) for item in data]

    def cancel(self, fax_id: str) -> FaxStatus:
        response = self._request("POST", f"/v1/faxes/{fax_id}/cancel")
        return FaxStatus.model_validate_json(response.content)

    def resolve(
        self,
        fax_id: str,
        outcome: str,
        *,
        recipient: int | None = None,
        note: str | None = None,
        user: str | None = None,
        from_start: bool = False,
    ) -> FaxStatus:
        """Settle a fax whose outcome is uncertain: ``"sent"`` (the far end got it) or
        ``"resend"`` (from the first unconfirmed page; ``from_start``: page 1), for one
        ``recipient`` or every uncertain one. ``user`` and ``note`` go into the history."""
        body: dict[str, Any] = {"outcome": outcome}
        optional = {"recipient": recipient, "note": note, "user": user}
        body.update({k: v for k, v in optional.items() if v is not None})
        if from_start:
            body["from_start"] = True
        response = self._request("POST", f"/v1/faxes/{fax_id}/resolve", json=body)
        return FaxStatus.model_validate_json(response.content)

    def alter(
        self,
        fax_id: str,
        *,
        priority: int | None = None,
        send_after: datetime | Literal["now"] | None = None,
        kill_after_seconds: float | None = None,
        numbers: dict[str, str] | None = None,
        override_policy: bool = False,
        note: str | None = None,
        user: str | None = None,
    ) -> FaxStatus:
        """Change a fax not yet on a line (``PATCH /v1/faxes/{id}``): its ``priority``,
        ``send_after`` (``"now"``: at once), kill time (``kill_after_seconds`` from its
        start) or recipients' ``numbers`` (current -> new). A change that needs routing to
        take the fax back shows under the recipient's ``pending`` until it applies."""
        body: dict[str, Any] = {}
        if priority is not None:
            body["priority"] = priority
        if send_after == "now":
            body["send_after"] = None
        elif send_after is not None:
            body["send_after"] = send_after.isoformat()
        if kill_after_seconds is not None:
            body["kill_after_seconds"] = kill_after_seconds
        if numbers:
            body["numbers"] = dict(numbers)
        if override_policy:
            body["override_policy"] = True
        body.update({k: v for k, v in {"note": note, "user": user}.items() if v is not None})
        response = self._request("PATCH", f"/v1/faxes/{fax_id}", json=body)
        return FaxStatus.model_validate_json(response.content)

    def requeue(
        self,
        fax_id: str,
        *,
        recipient: int | None = None,
        from_start: bool = False,
        kill_after_seconds: float | None = None,
        note: str | None = None,
        user: str | None = None,
    ) -> FaxStatus:
        """Send again a failed or ``outcome_uncertain`` fax (``POST /v1/faxes/{id}/retry``):
        from the first unconfirmed page (``from_start``: page 1), one ``recipient`` or
        every failed or uncertain one."""
        body: dict[str, Any] = {}
        optional = {
            "recipient": recipient,
            "kill_after_seconds": kill_after_seconds,
            "note": note,
            "user": user,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if from_start:
            body["from_start"] = True
        response = self._request("POST", f"/v1/faxes/{fax_id}/retry", json=body)
        return FaxStatus.model_validate_json(response.content)

    def sites(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/v1/sites").json())

    def fleet(self) -> dict[str, Any]:
        """The fleet's health: problems, sites with held and leased faxes, live
        processes by kind, what waits (``GET /v1/fleet``)."""
        return dict(self._request("GET", "/v1/fleet").json())

    # -- cost reports (docs/accounting.md) ---------------------------------------------

    def cost_report(
        self,
        by: str = "site",
        *,
        start: str | None = None,
        end: str | None = None,
        tenant: str | None = None,
    ) -> CostReport:
        """Calls, minutes, pages and cost per currency grouped ``by`` site, tenant,
        destination or day, for calls started in [start, end) (ISO dates or date-times
        with a zone)."""
        params = _report_params(start, end, tenant, by=by)
        response = self._request("GET", "/v1/reports/costs", params=params)
        return CostReport.model_validate_json(response.content)

    def cost_report_csv(
        self,
        by: str = "site",
        *,
        start: str | None = None,
        end: str | None = None,
        tenant: str | None = None,
    ) -> str:
        params = _report_params(start, end, tenant, by=by)
        return self._request("GET", "/v1/reports/costs.csv", params=params).text

    def calls(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[CallRecord]:
        """Call records of the range, oldest first (at most ``limit``)."""
        params = _report_params(start, end, tenant, limit=str(limit))
        data = self._request("GET", "/v1/reports/calls", params=params).json()
        return [CallRecord.model_validate(item) for item in data]

    def calls_csv(
        self, *, start: str | None = None, end: str | None = None, tenant: str | None = None
    ) -> str:
        """Every call record of the range as CSV."""
        params = _report_params(start, end, tenant)
        return self._request("GET", "/v1/reports/calls.csv", params=params).text

    # -- received faxes -----------------------------------------------------------------

    def inbound_list(self, *, limit: int = 50) -> list[InboundFax]:
        """Faxes received for this tenant, newest first (admin key: the unrouted ones)."""
        data = self._request("GET", "/v1/inbound", params={"limit": str(limit)}).json()
        return [InboundFax.model_validate(item) for item in data]

    def inbound_get(self, inbound_id: str) -> InboundFax:
        response = self._request("GET", f"/v1/inbound/{inbound_id}")
        return InboundFax.model_validate_json(response.content)

    def inbound_document(self, inbound_id: str) -> bytes:
        """The whole received fax as one multi-page TIFF."""
        return self._request("GET", f"/v1/inbound/{inbound_id}.tiff").content

    def inbound_preview(self, inbound_id: str, page: int = 1) -> bytes:
        """Page ``page`` of a received fax as PNG bytes (square pixels)."""
        return self._request("GET", f"/v1/inbound/{inbound_id}/pages/{page}.png").content

    def wait(
        self,
        fax_id: str,
        *,
        timeout: float = 3600.0,
        interval: float = 0.5,
        on_update: Callable[[FaxStatus], None] | None = None,
    ) -> FaxStatus:
        """Poll until the fax is settled (done, failed, cancelled, outcome uncertain)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get(fax_id)
            if on_update:
                on_update(status)
            if status.state in SETTLED_STATES:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"fax {fax_id} still {status.state.value} after {timeout} s")
            time.sleep(interval)


def _file(doc: Document) -> tuple[str, bytes]:
    if isinstance(doc, tuple):
        return doc
    if isinstance(doc, bytes):
        return ("document", doc)
    path = Path(doc)
    return (path.name, path.read_bytes())
