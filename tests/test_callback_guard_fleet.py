"""A tenant cannot use callbacks to probe the fleet's network: on a real fleet with the
default policy (public addresses only) and one loopback port opened by
FAXFLEET_CALLBACK_ALLOW, callbacks to internal addresses are refused at submission or when
sent, nothing reaches them, and the fax history gives generic reasons only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from faxfleet.fleet import Fleet, SiteSpec
from tests.conftest import paged_text, running_fleet
from tests.test_callback_guard import Hook, closed_port, hanging_up, serving

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}
INTERNAL_TEXT = ("Connection refused", "disconnected", "401", "Unauthorized", "Errno", "Error(")


class Targets:
    """Loopback servers: ``allowed`` (opened by the allow-list) and ``internal`` (not),
    a server that hangs up and a closed port (both opened)."""

    def __init__(self, allowed: Hook, internal: Hook, hang_up: int, closed: int) -> None:
        self.allowed, self.internal, self.hang_up, self.closed = allowed, internal, hang_up, closed


@pytest.fixture(scope="module")
def targets() -> Iterator[Targets]:
    with ExitStack() as stack:
        allowed = stack.enter_context(serving())
        allowed.answers["/unauthorized"] = 401
        internal = stack.enter_context(serving())
        hang_up = stack.enter_context(hanging_up())
        yield Targets(allowed, internal, hang_up, closed_port())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, targets: Targets) -> Iterator[Fleet]:
    opened = [targets.allowed.port, targets.hang_up, targets.closed]
    env = {
        # The strict default, with three loopback ports opened (not the internal one).
        "FAXFLEET_CALLBACK_ALLOW": ",".join(f"127.0.0.1:{port}" for port in opened),
        "FAXFLEET_NOTIFY_MAX_ATTEMPTS": "2",
    }
    with running_fleet(tmp_path_factory.mktemp("fleet"), [SiteSpec("paris", 2)], env) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


def submit(api: httpx.Client, callback_url: str) -> httpx.Response:
    return api.post(
        "/v1/faxes",
        headers=ACME,
        files=[("documents", ("note.txt", paged_text(1), "text/plain"))],
        data={"to": "+33142685300", "callback_url": callback_url},
    )


def webhook_note(api: httpx.Client, fax_id: str, timeout: float = 60) -> str:
    """The history note the webhook notification left (delivered or not)."""
    deadline = time.monotonic() + timeout
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
        notes = [
            t["detail"]
            for t in fax["history"]
            if (t["detail"] or "").startswith("webhook notification")
        ]
        if notes:
            return notes[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{fax_id}: no webhook note in {fax['history']}")
        time.sleep(0.1)


def test_callbacks_to_internal_names_are_refused_with_a_generic_reason(
    fleet: Fleet, api: httpx.Client, targets: Targets
) -> None:
    """``localhost`` resolves to loopback: the name passes submission, the notifier
    refuses its address. The routing admin API is the measured case."""
    urls = [
        targets.internal.url(host="localhost"),
        f"http://localhost:{fleet.admin_port}/v1/sites",
    ]
    faxes = {}
    for url in urls:
        resp = submit(api, url)
        assert resp.status_code == 201, resp.text
        faxes[url] = resp.json()["id"]
    for url, fax_id in faxes.items():
        assert webhook_note(api, fax_id) == (
            f"webhook notification to {url} refused: not a public address"
        )
    assert targets.internal.requests == []


def test_failures_at_opened_addresses_read_generically(api: httpx.Client, targets: Targets) -> None:
    cases = {
        targets.allowed.url("/ok"): "delivered to",
        targets.allowed.url("/unauthorized"): "failed: error answer",
        f"http://127.0.0.1:{targets.closed}/hook": "failed: no answer",
        f"http://127.0.0.1:{targets.hang_up}/hook": "failed: no answer",
    }
    faxes = {}
    for url in cases:
        resp = submit(api, url)
        assert resp.status_code == 201, resp.text
        faxes[url] = resp.json()["id"]
    for url, expected in cases.items():
        note = webhook_note(api, faxes[url])
        assert expected in note, note
        reason = note.removeprefix(f"webhook notification to {url} ")  # (ports hold digits)
        assert not any(text in reason for text in INTERNAL_TEXT), note
    assert sorted(r["path"] for r in targets.allowed.requests) == ["/ok", "/unauthorized"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{internal}/hook", "127.0.0.1 is not a public address (loopback)"),
        ("http://[::1]:6390/", "::1 is not a public address (loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "(link-local)"),
        ("http://admin:admin@hooks.acme.example/", "must not carry a user name or password"),
        ("gopher://127.0.0.1:6390/_INFO", "must be an http:// or https:// URL"),
    ],
)
def test_submission_refuses_internal_addresses_with_a_422(
    api: httpx.Client, targets: Targets, url: str, reason: str
) -> None:
    resp = submit(api, url.format(internal=targets.internal.port))
    assert resp.status_code == 422
    assert reason in resp.text
    assert targets.internal.requests == []
