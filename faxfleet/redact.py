"""Keeping secrets out of what is printed: URLs without their passwords, settings without
their keys, and the list of secret strings the log formatter scrubs from every line.

Secrets are found by name, so a setting added later is covered without a list to keep up:
a field whose name says ``password``, ``secret`` or ``token``, or ends in ``_key`` /
``_keys`` (API and admin keys; not ``*_tls_key``, a file's path), holds secrets; a field
ending in ``_url`` / ``_urls`` may carry a password in its URLs (``redis://:pw@host``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
MIN_SCRUBBED_LENGTH = 6
"""Shorter strings are not scrubbed from log lines (they would mangle ordinary words);
a secret that short is no secret anyway."""

_SECRET_NAME = re.compile(r"password|secret|token|(?<!tls)_keys?$")
_URL_NAME = re.compile(r"_urls?$")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/;,\s]*):[^@/;,\s]*@")


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***`` (``redis://:***@host:6379/0``);
    also each part of a ``;`` or ``,`` separated list (Sentinel groups, API URLs)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)


def url_passwords(url: str) -> set[str]:
    """The passwords in ``url`` (each part of a ``;`` or ``,`` separated list), as given
    and URL-decoded."""
    found: set[str] = set()
    for part in re.split(r"[;,]", url):
        try:
            password = urlsplit(part.strip()).password
        except ValueError:
            continue
        if password:
            found |= {password, unquote(password)}
    return found


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _plain(value: Any) -> Any:
    getter = getattr(value, "get_secret_value", None)  # pydantic SecretStr
    return getter() if callable(getter) else value


def secret_values(fields: Iterable[tuple[str, Any]]) -> set[str]:
    """The secret strings in ``(name, value)`` pairs (a settings object's fields): whole
    values of secret fields, each item of a comma-separated list and the key of each
    ``name=key`` pair, and the passwords of URLs."""
    found: set[str] = set()
    for name, raw in fields:
        value = _plain(raw)
        if not isinstance(value, str) or not value:
            continue
        if is_secret_name(name):
            found.add(value)
            for item in value.split(","):
                item = item.strip()
                found |= {item, item.partition("=")[2]}
        elif _URL_NAME.search(name):
            found |= url_passwords(value)
    return {s for s in found if len(s) >= MIN_SCRUBBED_LENGTH}


def redacted_fields(fields: Iterable[tuple[str | None, Any]]) -> Iterator[tuple[str | None, Any]]:
    """``(name, value)`` pairs with secret values masked and URL passwords redacted (what
    a settings object shows in its ``repr``)."""
    for name, value in fields:
        if name and is_secret_name(name) and value not in (None, ""):
            yield name, MASK
        elif name and _URL_NAME.search(name) and isinstance(value, str):
            yield name, redact_url(value)
        else:
            yield name, value


class Scrubber:
    """Replaces known secret strings in text (a formatted log line) by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted(
            {s for s in secrets if s and len(s) >= MIN_SCRUBBED_LENGTH}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
