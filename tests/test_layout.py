"""The project's shape: service boundaries, compose.yaml and the documented state machine
are checked against the code, so they cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from faxfleet.compose import COMPOSE_REPLICAS, COMPOSE_SITES, health_check, render_compose
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
    compose = yaml.safe_load(committed)
    services = compose["services"]
    specs = topology(COMPOSE_SITES, flower_port=5555, bind="0.0.0.0", replicas=COMPOSE_REPLICAS)
    for spec in specs:
        service = services[spec.name]
        assert service["command"] == ["python", *spec.argv]
        for key, value in spec.env.items():
            assert service["environment"][key] == value
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"] == health_check(spec)
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert {"redis", "mail"} <= set(services)
    assert set(services) == {"redis", "mail"} | {s.name for s in specs}
    redis = services["redis"]
    assert redis["volumes"] == ["redis-data:/data"] and "redis-data" in compose["volumes"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["command"][redis["command"].index("--appendfsync") + 1] == "everysec"


def test_compose_services_are_checked_office_capable_and_declared_from_a_folder() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for mapping in service.get("ports", []):  # published on an explicit address only
            address = mapping.rsplit(":", 2)[0]
            assert address in ("127.0.0.1", "${FAXFLEET_API_ADDRESS:-127.0.0.1}"), name
    assert compose["x-faxfleet"]["build"] == {"context": ".", "target": "faxfleet"}
    renderers = [n for n in services if n.startswith("render-")]
    assert renderers
    for name in renderers:
        assert services[name]["build"] == {"context": ".", "target": "render"}
        assert services[name]["image"] == "faxfleet-render:dev"
    admins = [n for n in services if n.startswith("routing-admin-")]
    for name in admins:
        assert services[name]["volumes"] == ["./fleet-config:/etc/faxfleet/fleet:ro"]
        assert services[name]["environment"]["FAXFLEET_FLEET_DIR"] == "/etc/faxfleet/fleet"
    assert (ROOT / "fleet-config" / "fleet.toml").is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    assert stages[1].startswith("python:3.11-slim AS faxfleet")
    render = next(s for s in stages if s.startswith("faxfleet AS render"))
    assert "libreoffice-writer-nogui" in render and "libreoffice-calc-nogui" in render
    assert render.rstrip().endswith("USER nobody")


def test_architecture_doc_draws_the_state_table_the_code_uses() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert mermaid() in doc, "regenerate the diagram from scheduler.states.mermaid()"
