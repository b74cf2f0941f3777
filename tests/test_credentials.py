"""API keys kept as hashes and compared in constant time, rotation with two keys per
tenant, the ``faxfleet keys`` commands, and services that refuse to start outside the
demo on its keys and secrets (real uvicorn and Celery processes, named variables)."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from faxfleet import credentials
from faxfleet.cli import cli
from faxfleet.compose import render_compose
from faxfleet.credentials import InsecureConfig, entry, mint, require_deployable
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.settings import Settings
from faxfleet.topology import SiteSpec, topology

ROOT = Path(__file__).resolve().parent.parent


# -- keys as hashes --------------------------------------------------------------------------


def test_a_minted_key_is_accepted_through_its_hash_alone() -> None:
    key = mint()
    assert key.startswith("ffk_") and len(key) > 50
    settings = Settings(api_keys=f"acme={entry(key)}", admin_keys="")
    found = settings.keys.match(key)
    assert found is not None and found.tenant == "acme" and not found.admin
    assert found.id == key.split("_")[1]  # the public id, shown in histories
    assert key not in settings.model_dump_json()
    # A wrong secret with the right id, the hash itself, nothing: refused.
    assert settings.keys.match(key[:-2] + ("AA" if not key.endswith("AA") else "BB")) is None
    assert settings.keys.match(entry(key)) is None
    assert settings.keys.match("") is None


def test_plain_keys_are_hashed_when_the_settings_load_and_not_kept() -> None:
    tenant_key, admin_key = "plain-tenant-key-1234", "plain-admin-key-5678"
    settings = Settings(api_keys=f"acme={tenant_key}", admin_keys=admin_key, demo=True)
    everything = settings.model_dump_json() + repr(settings) + str(pickle.dumps(settings))
    assert tenant_key not in everything and admin_key not in everything
    assert settings.api_keys.startswith("acme=sha256:")
    assert settings.admin_keys.startswith("sha256:")
    tenant, admin = settings.keys.match(tenant_key), settings.keys.match(admin_key)
    assert tenant is not None and tenant.tenant == "acme" and tenant.plain
    assert admin is not None and admin.admin


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by id, then compared with hmac.compare_digest: never a dict lookup of the
    secret, whose timing would tell how much of a guess is right."""
    key = mint()
    settings = Settings(api_keys=f"acme={entry(key)}", admin_keys="")
    calls: list[tuple[bytes, bytes]] = []
    real = credentials.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(credentials.hmac, "compare_digest", spy)
    assert settings.keys.match(key) is not None
    assert settings.keys.match(key[:-1] + "-") is None
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)


def test_two_keys_of_one_tenant_are_valid_at_once_for_a_rotation() -> None:
    old, new = mint(), mint()
    both = Settings(api_keys=f"acme={entry(old)},acme={entry(new)}", admin_keys="")
    found = [both.keys.match(k) for k in (old, new)]
    assert [f.tenant for f in found if f] == ["acme", "acme"]
    assert found[0] is not None and found[1] is not None and found[0].id != found[1].id
    rotated = Settings(api_keys=f"acme={entry(new)}", admin_keys="")
    assert rotated.keys.match(old) is None and rotated.keys.match(new) is not None


def test_a_key_given_twice_or_a_bad_entry_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = mint()
    with pytest.raises(ValueError, match="configured twice"):
        Settings(api_keys=f"acme={entry(key)},globex={key}", admin_keys="")
    with pytest.raises(ValueError, match="configured twice"):
        Settings(api_keys=f"acme={entry(key)}", admin_keys=key)
    with pytest.raises(ValueError, match="FAXFLEET_API_KEYS") as bad:
        Settings(api_keys="acme=sha256:1234:abcd", admin_keys="")
    monkeypatch.setenv("FAXFLEET_API_KEYS", "secret-without-a-tenant")
    with pytest.raises(ValueError, match="not tenant=key") as no_tenant:
        Settings()
    assert "without-a-tenant" not in str(no_tenant.value) + str(bad.value)


def test_keys_new_prints_the_key_once_and_the_entry_the_settings_accept() -> None:
    run = CliRunner().invoke(cli, ["keys", "new", "--tenant", "acme"], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    key = next(w for w in run.output.split() if w.startswith("ffk_"))
    line = run.output.strip().splitlines()[-1]
    assert line.startswith("acme=sha256:") and key not in line
    assert run.output.count(key) == 1
    assert Settings(api_keys=line, admin_keys="").keys.match(key) is not None
    admin = CliRunner().invoke(cli, ["keys", "new", "--admin"])
    admin_key = next(w for w in admin.output.split() if w.startswith("ffk_"))
    admin_line = admin.output.strip().splitlines()[-1]
    assert Settings(api_keys="", admin_keys=admin_line).keys.match(admin_key).admin  # type: ignore[union-attr]
    assert CliRunner().invoke(cli, ["keys", "new"]).exit_code != 0  # --tenant or --admin


def test_keys_hash_gives_the_entry_of_an_existing_key_read_from_stdin() -> None:
    key = "an-existing-key-of-some-length-0123"
    run = CliRunner().invoke(cli, ["keys", "hash", "--tenant", "acme"], input=key + "\n")
    assert run.exit_code == 0, run.output
    assert run.output.strip() == f"acme={entry(key)}"
    short = CliRunner().invoke(cli, ["keys", "hash", "--admin"], input="short\n")
    assert short.exit_code != 0 and "mint one" in short.output


def test_keys_init_writes_an_environment_a_deployment_starts_with(tmp_path: Path) -> None:
    run = CliRunner().invoke(cli, ["keys", "init", "--tenant", "acme", "--tenant", "globex"])
    assert run.exit_code == 0, run.output
    lines = [x for x in run.stdout.splitlines() if x and not x.startswith("#")]
    env = dict(x.split("=", 1) for x in lines)
    assert set(env) == {
        "FAXFLEET_API_KEYS",
        "FAXFLEET_ADMIN_KEYS",
        "FAXFLEET_WEBHOOK_SECRET",
        "FAXFLEET_FLOWER_BASIC_AUTH",
    }
    assert "ffk_" not in run.stdout  # the keys go to stderr, once
    keys = [w for w in run.stderr.split() if w.startswith("ffk_")]
    assert len(keys) == 3
    settings = Settings(
        api_keys=env["FAXFLEET_API_KEYS"],
        admin_keys=env["FAXFLEET_ADMIN_KEYS"],
        webhook_secret=env["FAXFLEET_WEBHOOK_SECRET"],
        demo=False,
    )
    require_deployable(settings, "keys", "webhook")
    assert [settings.keys.match(k).tenant for k in keys] == ["acme", "globex", None]  # type: ignore[union-attr]
    credentials.flower_credentials(env["FAXFLEET_FLOWER_BASIC_AUTH"], demo=False)


# -- outside the demo: no start on the demo's secrets --------------------------------------------


def test_settings_validation_names_every_default_and_plain_secret() -> None:
    defaults = Settings(demo=False)
    with pytest.raises(InsecureConfig) as refused:
        require_deployable(defaults, "keys", "webhook")
    message = str(refused.value)
    for var in ("FAXFLEET_API_KEYS", "FAXFLEET_ADMIN_KEYS", "FAXFLEET_WEBHOOK_SECRET"):
        assert var in message
    assert "FAXFLEET_DEMO=1" in message
    hashed_demo = Settings(api_keys=f"acme={entry('demo-key')}", admin_keys="", demo=False)
    with pytest.raises(InsecureConfig, match="tenant acme is a demo key"):
        require_deployable(hashed_demo, "keys")
    plain = Settings(api_keys=f"acme={mint()}", admin_keys="", demo=False)
    with pytest.raises(InsecureConfig, match="tenant acme is given in plain text"):
        require_deployable(plain, "keys")
    with pytest.raises(InsecureConfig, match="FAXFLEET_WEBHOOK_SECRET is shorter"):
        require_deployable(Settings(webhook_secret="short", demo=False), "webhook")
    require_deployable(defaults.model_copy(update={"demo": True}), "keys", "webhook")


def _outside_demo(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAXFLEET_")}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


def _refused(argv: list[str], env: dict[str, str]) -> str:
    """Run a service; it must exit by itself (not serve); its output."""
    run = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "refusing to start" in run.stdout + run.stderr, run.stdout + run.stderr
    return run.stdout + run.stderr


@pytest.mark.parametrize("app", ["scheduler.api:app", "routing.admin:app"])
def test_the_api_and_the_admin_api_refuse_the_demo_keys_outside_the_demo(
    app: str, redis_server: RedisServer
) -> None:
    port = str(free_port())
    argv = ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", port]
    out = _refused(argv, _outside_demo(FAXFLEET_REDIS_URL=redis_server.url))
    assert "FAXFLEET_API_KEYS: the key of tenant demo is a demo key" in out
    assert "FAXFLEET_ADMIN_KEYS: an admin key is a demo key" in out
    plain = _outside_demo(
        FAXFLEET_REDIS_URL=redis_server.url,
        FAXFLEET_API_KEYS=f"acme={mint()}",
        FAXFLEET_ADMIN_KEYS=entry(mint()),
    )
    out = _refused(argv, plain)
    assert "FAXFLEET_API_KEYS: the key of tenant acme is given in plain text" in out
    assert "FAXFLEET_ADMIN_KEYS" not in out


@pytest.mark.parametrize("app", ["scheduler.api:app", "routing.admin:app"])
def test_with_hashed_keys_the_api_starts_and_takes_the_key_not_its_hash(
    app: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    tenant_key, admin_key = mint(), mint()
    env = _outside_demo(
        FAXFLEET_REDIS_URL=redis_server.url,
        FAXFLEET_API_KEYS=f"acme={entry(tenant_key)}",
        FAXFLEET_ADMIN_KEYS=entry(admin_key),
    )
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(base + "/v1/groups", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        # Admin keys list every tenant's faxes (``all=true``); a tenant key its own.
        path = "/v1/groups" if app.startswith("routing") else "/v1/faxes"
        codes = {
            who: httpx.get(
                base + path + ("?all=true" if who == "admin" and path == "/v1/faxes" else ""),
                headers={"X-API-Key": key},
                timeout=10,
            ).status_code
            for who, key in {
                "tenant": tenant_key,
                "admin": admin_key,
                "hash": entry(tenant_key).split(":", 2)[2],
                "entry": entry(tenant_key),
                "wrong": tenant_key[:-1] + ("x" if tenant_key[-1] != "x" else "y"),
            }.items()
        }
        ok = 200
        assert codes == {
            "tenant": ok,
            "admin": ok,
            "hash": 401,
            "entry": 401,
            "wrong": 401,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_scheduler_worker_refuses_the_demo_webhook_secret_outside_the_demo(
    redis_server: RedisServer,
) -> None:
    argv = ["-m", "celery", "-A", "scheduler.tasks", "worker", "-Q", "notify.paris", "-P", "solo"]
    out = _refused(argv, _outside_demo(FAXFLEET_REDIS_URL=redis_server.url))
    assert "FAXFLEET_WEBHOOK_SECRET is the demo's ('change-me')" in out
    assert "Traceback" not in out


# -- where secrets live: compose and the topology ----------------------------------------------


def test_compose_holds_no_secret_and_publishes_on_loopback_only() -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert text == render_compose()
    for secret in ("demo-key", "admin-key", "change-me", "demo-secret", "acme-key"):
        assert secret not in text, secret
    compose = yaml.safe_load(text)
    assert compose["x-faxfleet"]["env_file"] == ["faxfleet.env"]
    published = {}
    for name, service in compose["services"].items():
        for var, value in service.get("environment", {}).items():
            if re.fullmatch(r"\$\{FAXFLEET_REDIS_PASSWORD:\?[^}]*\}", str(value)):
                continue  # interpolated by compose from .env, never written here
            assert not any(w in var for w in ("KEY", "SECRET", "PASSWORD", "AUTH", "DEMO")), var
        if name != "redis":
            assert service.get("env_file", compose["x-faxfleet"]["env_file"]) == ["faxfleet.env"]
        for port in service.get("ports", []):
            published[name] = port
    assert set(published) == {"api-1", "api-2", "flower"}
    assert published["flower"] == "127.0.0.1:5555:5555"
    assert published["api-1"] == "${FAXFLEET_API_ADDRESS:-127.0.0.1}:8040:8040"
    assert "faxfleet.env" in (ROOT / ".gitignore").read_text().split()


def test_every_topology_runs_flower_through_its_credential_check_on_loopback() -> None:
    for replicas in (1, 2):
        specs = topology([SiteSpec("paris", 2)], replicas=replicas, flower_port=5555)
        flower = next(s for s in specs if s.kind == "flower")
        assert flower.argv == ["-m", "faxfleet.monitor", "--port=5555", "--address=127.0.0.1"]
        assert all("0.0.0.0" not in s.argv for s in specs)
