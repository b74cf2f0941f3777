"""Flower never runs open: a real Flower process (``python -m faxfleet.monitor``) on a
private Redis asks for credentials on its pages and API, refuses to start without them,
and what it shows of a task's arguments names the fax, not the number or the sender."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from faxfleet.celery_app import SEND_TASK, RedactingRequest, make_celery, send, site_queue
from faxfleet.messages import SendOrder
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "ops", "a-long-flower-password"
NUMBER, SENDER = "+33142685399", "Jeanne Expéditrice"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAXFLEET_", "FLOWER_"))}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def flower(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    env = _env(
        FAXFLEET_REDIS_URL=redis_server.url,
        FAXFLEET_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
        FLOWER_UNAUTHENTICATED_API="true",  # dropped: it cannot open Flower
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "faxfleet.monitor", f"--port={port}", "--address=127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(base + "/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


DATATABLE = {"draw": 1, "start": 0, "length": 10, "order[0][column]": 0}


@pytest.mark.parametrize("path", ["/", "/tasks", "/tasks/datatable", "/api/tasks", "/workers"])
def test_flower_pages_and_api_need_credentials(flower: str, path: str) -> None:
    params = DATATABLE if path == "/tasks/datatable" else None
    assert httpx.get(flower + path, params=params, timeout=10).status_code == 401
    wrong = httpx.get(flower + path, params=params, auth=(USER, "guess"), timeout=10)
    assert wrong.status_code == 401
    right = httpx.get(flower + path, params=params, auth=(USER, PASSWORD), timeout=10)
    assert right.status_code == 200


def _order(job_id: str) -> SendOrder:
    now = datetime.now(UTC).timestamp()
    return SendOrder(
        job_id=job_id,
        recipient=0,
        attempt=1,
        number=NUMBER,
        pages=2,
        first_page=1,
        priority=5,
        home_site="paris",
        tenant="acme",
        sender=SENDER,
        site="paris",
        routed_at=now,
        dial_string="0033142685399",
    )


def test_flower_shows_the_fax_id_but_not_the_number_or_sender(
    flower: str, redis_server: RedisServer
) -> None:
    app = make_celery("test-sender", Settings(redis_url=redis_server.url))
    job_id = f"fx_flower{int(time.time() * 1000)}"
    time.sleep(1.0)  # Flower's event receiver attaches after its HTTP server
    send(app, SEND_TASK, "order", _order(job_id), site_queue("paris"), 5)
    deadline = time.monotonic() + 20
    while True:
        tasks = httpx.get(flower + "/api/tasks", auth=(USER, PASSWORD), timeout=10).json()
        mine = [t for t in tasks.values() if job_id in (t.get("kwargs") or "")]
        if mine:
            break
        assert time.monotonic() < deadline, tasks
        time.sleep(0.2)
    table = httpx.get(
        flower + "/tasks/datatable", params=DATATABLE, auth=(USER, PASSWORD), timeout=10
    ).text
    shown = repr(mine) + table
    assert job_id in table
    for secret in (NUMBER, NUMBER.lstrip("+"), "0033142685399", SENDER, "acme"):
        assert secret not in shown, secret


def test_a_worker_shows_redacted_arguments_and_only_a_failures_type() -> None:
    """``inspect active|reserved|scheduled`` (Flower's worker pages) and task events."""
    app = make_celery("test-redact", Settings())
    kwargs = {"order": _order("fx_inspect").model_dump(mode="json")}
    headers = app.amqp.as_task_v2("tid", SEND_TASK, (), kwargs).headers
    assert "fx_inspect" in headers["kwargsrepr"] and NUMBER not in headers["kwargsrepr"]
    assert app.Task.Request == "faxfleet.celery_app:RedactingRequest"

    sent: list[tuple[str, dict[str, Any]]] = []
    request = RedactingRequest.__new__(RedactingRequest)
    request._eventer = SimpleNamespace(enabled=True, send=lambda t, **f: sent.append((t, f)))
    request._task = SimpleNamespace(send_events=True)
    request.id = "tid"
    request.send_event(
        "task-failed",
        exception=f"NotifyError('mail to bob@example.com about {NUMBER} failed')",
        traceback=f"Traceback ... {NUMBER}",
    )
    ((kind, fields),) = sent
    assert kind == "task-failed" and fields["exception"].startswith("NotifyError(")
    assert NUMBER not in repr(fields) and "bob@example.com" not in repr(fields)


def test_flower_refuses_to_start_without_credentials_or_with_a_demo_password(
    redis_server: RedisServer,
) -> None:
    argv = [sys.executable, "-m", "faxfleet.monitor", f"--port={free_port()}"]
    for extra, expected in [
        ({}, "refusing to start Flower without credentials: set FAXFLEET_FLOWER_BASIC_AUTH"),
        ({"FLOWER_UNAUTHENTICATED_API": "true"}, "FAXFLEET_FLOWER_BASIC_AUTH"),
        (
            {"FAXFLEET_FLOWER_BASIC_AUTH": "admin:admin"},
            "FAXFLEET_FLOWER_BASIC_AUTH: the password of admin is a demo one",
        ),
        (
            {"FAXFLEET_FLOWER_BASIC_AUTH": "ops:short"},
            "FAXFLEET_FLOWER_BASIC_AUTH: the password of ops is shorter than 12",
        ),
    ]:
        env = _env(FAXFLEET_REDIS_URL=redis_server.url, **extra)
        run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and expected in run.stderr, (extra, run.stderr)
