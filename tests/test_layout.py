"""The project's shape: service boundaries, compose.yaml and the documented state machine
are checked against the code, so they cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from faxfleet.compose import COMPOSE_SITES, render_compose
from faxfleet.fleet import topology
from scheduler.states import mermaid

ROOT = Path(__file__).resolve().parent.parent


def test_services_only_meet_in_the_shared_package() -> None:
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout


def test_compose_file_is_generated_from_the_launcher_topology() -> None:
    committed = (ROOT / "compose.yaml").read_text()
    assert committed == render_compose(), "run: faxfleet compose > compose.yaml"
    services = yaml.safe_load(committed)["services"]
    for spec in topology(COMPOSE_SITES, flower_port=5555, bind="0.0.0.0"):
        assert services[spec.name]["command"] == ["python", *spec.argv]
        for key, value in spec.env.items():
            assert services[spec.name]["environment"][key] == value
    assert {"redis", "mail"} <= set(services)


def test_architecture_doc_draws_the_state_table_the_code_uses() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert mermaid() in doc, "regenerate the diagram from scheduler.states.mermaid()"
