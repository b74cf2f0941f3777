"""Talking to a test fleet's API: submit a text fax, read one back, wait for a state."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from tests.conftest import paged_text

ACME = {"X-API-Key": "acme-key"}


def submit(
    api: httpx.Client, number: str, pages: int, email: str | None = None, headers: dict = ACME
) -> str:
    """A ``pages``-page text fax to ``number`` (with a mail notification to ``email``)."""
    data: dict = {"to": [number]}
    if email:
        data["notify_email"] = email
    resp = api.post(
        "/v1/faxes",
        headers=headers,
        data=data,
        files=[("documents", ("doc.txt", paged_text(pages), "text/plain"))],
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def fax(api: httpx.Client, fax_id: str, headers: dict = ACME) -> dict:
    return dict(api.get(f"/v1/faxes/{fax_id}", headers=headers).json())


def wait_fax(
    api: httpx.Client,
    fax_id: str,
    predicate: Callable[[dict], bool],
    timeout: float = 60,
    headers: dict = ACME,
) -> dict:
    """The fax once ``predicate`` holds (fails with the fax after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = fax(api, fax_id, headers)
        if predicate(found):
            return found
        assert time.monotonic() < deadline, json.dumps(found, indent=1)[:4000]
        time.sleep(0.05)
