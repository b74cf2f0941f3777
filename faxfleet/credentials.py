"""API keys kept as hashes, and the refusal to run a deployment on the demo's secrets.

An API key minted by ``faxfleet keys new`` is ``ffk_<id>_<secret>``: a public id of 12
hex digits and 256 random bits. The configuration holds only ``sha256:<id>:<digest>``
(the SHA-256 of the whole key): a leaked environment or compose file gives no key away.
A request's key is hashed, its candidates are found by id (never by looking the secret
up) and compared with :func:`hmac.compare_digest`. A tenant may have several keys at once
(``acme=sha256:…,acme=sha256:…``): a new key is added, clients move to it, the old one is
removed, with no moment without a valid key.

Plain keys in the configuration (``acme=acme-key``, as the demo and the tests use) are
hashed when the settings load and not kept; their id is the start of their digest.
Outside the demo (``FAXFLEET_DEMO`` unset) a service refuses to start on a plain key, on a
well-known demo secret or without Flower credentials, and names the variable at fault:
:func:`require_deployable`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faxfleet.settings import Settings

KEY_PREFIX = "ffk"
_MINTED = re.compile(r"ffk_([0-9a-f]{12})_([A-Za-z0-9_-]{32,})")
_ENTRY = re.compile(r"sha256:([0-9a-f]{12}):([0-9a-f]{64})")

DEMO_SECRETS = ("demo-key", "admin-key", "change-me", "demo-secret", "flower", "admin")
"""Secrets of the defaults, the demo and the docs' examples: never valid in a deployment."""

MIN_WEBHOOK_SECRET = 16
MIN_FLOWER_PASSWORD = 12

API_KEYS_VAR = "FAXFLEET_API_KEYS"
ADMIN_KEYS_VAR = "FAXFLEET_ADMIN_KEYS"
WEBHOOK_SECRET_VAR = "FAXFLEET_WEBHOOK_SECRET"
FLOWER_AUTH_VAR = "FAXFLEET_FLOWER_BASIC_AUTH"
DEMO_VAR = "FAXFLEET_DEMO"


def mint() -> str:
    """A new API key: ``ffk_<12 hex digits>_<43 URL-safe characters>``."""
    return f"{KEY_PREFIX}_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """A key's public id: the one a minted key carries, else the start of its digest."""
    match = _MINTED.fullmatch(key)
    return match.group(1) if match else _digest(key).hex()[:12]


def entry(key: str) -> str:
    """What the configuration holds for ``key``: ``sha256:<id>:<hex digest>``."""
    return f"sha256:{key_id(key)}:{_digest(key).hex()}"


_DEMO_DIGESTS = frozenset(_digest(s) for s in DEMO_SECRETS)


@dataclass(frozen=True)
class StoredKey:
    """One accepted key, as the configuration gives it: never the key itself."""

    id: str
    digest: bytes
    tenant: str | None
    """None: an admin key."""
    plain: bool = False
    """Given in plain text (hashed when the settings loaded)."""

    @property
    def admin(self) -> bool:
        return self.tenant is None

    @property
    def demo(self) -> bool:
        """One of the well-known demo secrets, plain or hashed."""
        return self.digest in _DEMO_DIGESTS

    def entry(self) -> str:
        return f"sha256:{self.id}:{self.digest.hex()}"


def _stored(value: str, tenant: str | None, var: str) -> StoredKey:
    match = _ENTRY.fullmatch(value)
    if match:
        return StoredKey(match.group(1), bytes.fromhex(match.group(2)), tenant)
    if value.startswith("sha256:"):
        raise ValueError(f"{var} entry {value[:20]}… is not sha256:<12 hex id>:<64 hex digest>")
    return StoredKey(key_id(value), _digest(value), tenant, plain=True)


def parse_tenant_keys(text: str) -> list[StoredKey]:
    """``tenant=key`` or ``tenant=sha256:<id>:<digest>`` pairs, comma-separated."""
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        tenant, sep, value = item.strip().partition("=")
        if not sep or not tenant.strip() or not value.strip():
            # Never echo the item: it may be a key.
            raise ValueError(f"{API_KEYS_VAR} has an entry that is not tenant=key")
        out.append(_stored(value.strip(), tenant.strip(), API_KEYS_VAR))
    return out


def parse_admin_keys(text: str) -> list[StoredKey]:
    """Admin keys or ``sha256:<id>:<digest>`` entries, comma-separated."""
    return [_stored(v.strip(), None, ADMIN_KEYS_VAR) for v in text.split(",") if v.strip()]


class KeyRing:
    """The keys a node accepts, found by id and compared in constant time."""

    def __init__(self, stored: Iterable[StoredKey]) -> None:
        self.keys = list(stored)
        self._by_id: dict[str, list[StoredKey]] = {}
        for key in self.keys:
            same = self._by_id.setdefault(key.id, [])
            if any(other.digest == key.digest for other in same):
                where = "tenants" if key.tenant else "entries"
                raise ValueError(f"key {key.id} is configured twice (two {where}, or admin too)")
            same.append(key)

    def match(self, presented: str) -> StoredKey | None:
        """The stored key ``presented`` is, or None. Every candidate of its id is compared
        (:func:`hmac.compare_digest`), so the time taken says nothing about the secret."""
        digest = _digest(presented)
        found = None
        for candidate in self._by_id.get(key_id(presented), ()):
            if hmac.compare_digest(candidate.digest, digest):
                found = candidate
        return found

    @property
    def tenants(self) -> set[str]:
        return {k.tenant for k in self.keys if k.tenant is not None}

    def entries(self, admin: bool) -> str:
        """The configuration value again, every key as its hash."""
        keys = [k for k in self.keys if k.admin == admin]
        return ",".join(k.entry() if admin else f"{k.tenant}={k.entry()}" for k in keys)


# -- refusing a deployment on the demo's secrets -------------------------------------------


class InsecureConfig(RuntimeError):
    """A service was about to start, outside the demo, on a secret anyone knows."""


def key_problems(settings: Settings) -> list[str]:
    problems = []
    for var, admin in ((API_KEYS_VAR, False), (ADMIN_KEYS_VAR, True)):
        keys = [k for k in settings.keys.keys if k.admin == admin]
        for key in keys:
            who = "an admin key" if admin else f"the key of tenant {key.tenant}"
            if key.demo:
                problems.append(f"{var}: {who} is a demo key")
            elif key.plain:
                problems.append(
                    f"{var}: {who} is given in plain text; give its hash "
                    f"(`faxfleet keys hash`) or a new key's (`faxfleet keys new`)"
                )
    return problems


def webhook_problems(settings: Settings) -> list[str]:
    secret = settings.webhook_secret
    if secret in DEMO_SECRETS:
        return [f"{WEBHOOK_SECRET_VAR} is the demo's ({secret!r})"]
    if len(secret) < MIN_WEBHOOK_SECRET:
        return [f"{WEBHOOK_SECRET_VAR} is shorter than {MIN_WEBHOOK_SECRET} characters"]
    return []


def flower_credentials(value: str | None, demo: bool) -> list[str]:
    """Flower's ``user:password`` list, checked (raises :class:`InsecureConfig`)."""
    if not value or not value.strip():
        raise InsecureConfig(
            f"refusing to start Flower without credentials: set {FLOWER_AUTH_VAR} to "
            "user:password (several: comma-separated)"
        )
    pairs = [p.strip() for p in value.split(",") if p.strip()]
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise InsecureConfig(f"{FLOWER_AUTH_VAR} has an entry that is not user:password")
        if demo:
            continue
        if password in DEMO_SECRETS or password == user:
            raise InsecureConfig(f"{FLOWER_AUTH_VAR}: the password of {user} is a demo one")
        if len(password) < MIN_FLOWER_PASSWORD:
            raise InsecureConfig(
                f"{FLOWER_AUTH_VAR}: the password of {user} is shorter than "
                f"{MIN_FLOWER_PASSWORD} characters"
            )
    return pairs


_CHECKS = {"keys": key_problems, "webhook": webhook_problems}


def require_deployable(settings: Settings, *uses: str) -> None:
    """Raise :class:`InsecureConfig` naming each variable that holds a demo secret or a
    plain key, unless ``FAXFLEET_DEMO`` is set. ``uses``: what the calling service relies
    on, among ``keys`` (API and admin keys) and ``webhook`` (the callback signing key)."""
    if settings.demo:
        return
    problems = [p for use in uses for p in _CHECKS[use](settings)]
    if problems:
        raise InsecureConfig(
            "refusing to start outside the demo: "
            + "; ".join(problems)
            + f". Set real secrets (docs/administration.md#keys-and-secrets), or {DEMO_VAR}=1 "
            "for a local demo."
        )
