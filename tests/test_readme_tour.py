"""The README's "30-second tour" runs as written, from the repository's root, against the
demo's fleet: every shell command of its code blocks (``$API`` and each ``fx_...``
replaced by a real fax in the state the command needs) and its Python snippet."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from faxfleet import keys
from faxfleet.client import FaxClient
from faxfleet.demo import DemoFleet, demo_fleet, running_banner
from faxfleet.messages import FaxStatus, JobState
from tests.conftest import paged_text

pytestmark = pytest.mark.fleet

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PLACEHOLDER = "fx_..."
BUSY = "+33142685390"  # scripted busy: a fax to it fails after FAXFLEET_MAX_DIALS (4)
LONG = "+33142685391"  # a long fax, its site killed mid-call: outcome uncertain


def tour() -> tuple[list[str], list[str]]:
    """The tour's shell commands (continuation lines joined) and its Python snippets."""
    text = README.read_text()
    start = text.index("## A 30-second tour")
    section = text[start : text.index("\n## ", start + 1)]
    shell: list[str] = []
    python: list[str] = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        if lang == "python":
            python.append(body)
        elif lang == "sh":
            shell += [c for c in body.replace("\\\n", " ").splitlines() if c.strip()]
    return shell, python


def test_tour_is_found_and_uses_real_paths() -> None:
    shell, python = tour()
    assert len(shell) >= 14 and len(python) == 1
    for command in shell:
        for path in re.findall(r"(?:@|\s)([^\s@=]+\.(?:pdf|docx|txt))\b", command):
            assert (ROOT / path).is_file(), f"{path} in {command!r}"
    assert (ROOT / "faxfleet/samples/letter.docx").is_file()
    # Placeholders are the only made-up values: fx_... and $API.
    assert all("fx_" not in c or PLACEHOLDER in c for c in shell)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoFleet]:
    # The watchdog declares a call whose site went silent uncertain after 5 s here.
    with demo_fleet(
        tmp_path_factory.mktemp("tour"), {"FAXFLEET_STUCK_AFTER_SECONDS": "250"}
    ) as running:
        yield running


def _wait(client: FaxClient, fax_id: str, done, timeout: float = 90) -> FaxStatus:
    deadline = time.monotonic() + timeout
    while True:
        fax = client.get(fax_id)
        if done(fax):
            return fax
        assert time.monotonic() < deadline, fax.model_dump_json(indent=1)[:3000]
        time.sleep(0.1)


def _uncertain(demo: DemoFleet, client: FaxClient) -> str:
    """A fax whose site was killed mid-call (a successor on another node cannot prove
    the call ended): ``outcome_uncertain``."""
    sent = client.send([("long.txt", paged_text(12))], [LONG], priority=9)
    _wait(client, sent.id, lambda f: (f.recipients[0].page or 0) >= 2)
    site = client.get(sent.id).recipients[0].site or "paris"
    fleet = demo.fleet
    fleet.stop_service(f"site-{site}", kill=True)
    _wait(client, sent.id, lambda f: f.state == JobState.OUTCOME_UNCERTAIN, timeout=60)
    spec = fleet.spec(f"site-{site}")
    fleet.start_service(replace(spec, env={**spec.env, "FAXFLEET_NODE_NAME": "standby"}))
    fleet.wait_ready()
    return sent.id


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cli = f"{sys.executable} -m faxfleet.cli"
    return subprocess.run(
        ["bash", "-c", command.replace(".venv/bin/faxfleet", cli)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_demo_prints_the_lines_to_paste(demo: DemoFleet) -> None:
    banner = running_banner(demo.api_url, "flower", "redis")
    pasted = [line.strip() for line in banner.splitlines() if line.strip().startswith("export ")]
    assert len(pasted) == 2
    run = subprocess.run(
        ["bash", "-c", "\n".join([*pasted, 'echo "$API $FAXFLEET_API_URLS $FAXFLEET_API_KEY"'])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == [demo.api_url, demo.api_url, "demo-key"]
    # The tour's CLI block starts with the same export the demo prints.
    shell, _ = tour()
    assert pasted[1] in shell


def test_the_tour_runs_as_written(demo: DemoFleet) -> None:
    shell, python = tour()
    api = demo.api_url
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FAXFLEET_")},
        "API": api,
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "100",
    }
    demo.server.client().rpush(keys.sim_script(BUSY), *["busy"] * 20)
    later = datetime.now(UTC) + timedelta(hours=1)
    with FaxClient(api, api_key="demo-key") as client:
        uncertain = _uncertain(demo, client)
        failed = client.send([("n.txt", b"note")], [BUSY]).id  # busy 4 times: failed
        waiting = [
            client.send([("w.txt", b"later")], ["+33142685392"], send_after=later).id
            for _ in range(4)
        ]
        _wait(client, failed, lambda f: f.state == JobState.FAILED)

        # The first command submits a fax: the other commands about "a fax" use it.
        first = _run(shell[0], env)
        assert first.returncode == 0, first.stderr
        submitted = json.loads(first.stdout)["id"]
        _wait(client, submitted, lambda f: f.state == JobState.DONE)

        def fax_for(command: str) -> str:
            """A fax in the state the command needs."""
            if "PATCH" in command:
                return waiting[0]
            if "/cancel" in command:
                return waiting[1]
            if "faxfleet alter" in command:
                return waiting[2]
            if "faxfleet cancel" in command:
                return waiting[3]
            if "faxfleet resolve" in command:
                return uncertain
            if "faxfleet requeue" in command:
                return failed
            return submitted

        prefix = ""
        outputs: dict[str, str] = {}
        for command in shell[1:]:
            real = command.replace(PLACEHOLDER, fax_for(command))
            run = _run(prefix + real, env)
            assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
            outputs[command] = run.stdout
            if command.startswith("export "):
                prefix += command + "\n"  # later commands run in the same shell session

        # Each command did what the tour says.
        assert client.get(waiting[0]).priority == 9
        assert client.get(waiting[1]).state == JobState.CANCELLED
        altered = client.get(waiting[2])
        assert altered.priority == 9 and altered.send_after is not None
        assert client.get(waiting[3]).state == JobState.CANCELLED
        assert client.get(uncertain).state == JobState.DONE  # resolved as sent
        requeued = client.get(failed)
        assert any((t.detail or "").startswith("requeued by") for t in requeued.history)
        sites = next(out for c, out in outputs.items() if "$API/v1/sites" in c)
        assert {s["name"] for s in json.loads(sites)} >= {"paris", "newyork"}

        # preview: the page as sent, header line included, saved in the current directory.
        png = ROOT / f"{submitted}-p1.png"
        try:
            page = Image.open(io.BytesIO(png.read_bytes())).convert("L")
        finally:
            png.unlink(missing_ok=True)
        assert page.size == (1728, 2292)
        assert page.crop((0, 0, 1728, 32)).getextrema()[0] == 0

        # The Office letter, with its cover page addressed.
        letters = [f for f in client.list(limit=50) if f.cover is not None]
        assert letters, "the letter was not submitted"
        letter = _wait(client, letters[0].id, lambda f: f.state in (JobState.DONE, JobState.FAILED))
        assert letter.state == JobState.DONE and (letter.pages or 0) >= 2
        assert letter.cover and letter.cover.recipient_name == "Jean Dupont"
        assert letter.cover.sender_name == "Alice Martin"

        # The Python snippet, as written, with the exported API URLs.
        snippet = subprocess.run(
            [sys.executable, "-c", python[0]],
            cwd=ROOT,
            env={**env, "FAXFLEET_API_URLS": api},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert snippet.returncode == 0, snippet.stderr
        assert snippet.stdout.startswith("done ["), snippet.stdout
