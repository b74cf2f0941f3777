"""Received faxes: who gets them (the DID routing table) and where they are kept.

Routing rules, in the order they are tried (the first that matches wins):

1. the called number exactly (``"+33142685300"``);
2. the longest number prefix ending in ``*`` (``"+3314268530*"``: a block of DIDs);
3. the answering line's name (``"line:paris-3"``), for lines without DID or to give a
   whole line to one tenant;
4. the default route ``"*"``;
5. nothing matched: the fax is kept **unrouted**. It notifies nobody; admins see it (the
   admin key on ``/v1/inbound``) until it expires. A fax is never handed to a tenant
   by guesswork.

Called numbers are compared in E.164: a national number is read in
``FAXFLEET_DEFAULT_REGION``; what cannot be read as a number is compared as given,
without spaces, dots, dashes and brackets.

Keys (private to the scheduler; the fax itself is ``faxfleet.keys.inbound_fax``):

* ``ff:inbound:{id}``: the record (JSON of :class:`InboundFax`)
* ``ff:inbound:tenant:{t}``: a tenant's received faxes by time (sorted set)
* ``ff:inbound:unrouted``: faxes no route matched (sorted set)

Everything expires after ``FAXFLEET_INBOUND_RETENTION_SECONDS``; index entries older
than that are pruned when the index is read.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from faxfleet import keys
from faxfleet.messages import InboundFax, InboundReceived, NotifyTarget
from faxfleet.numbers import InvalidNumber, to_e164

DEFAULT = "*"
LINE_PREFIX = "line:"
UNROUTED = "ff:inbound:unrouted"


def record_key(inbound_id: str) -> str:
    return f"ff:inbound:{inbound_id}"


def tenant_index(tenant: str) -> str:
    return f"ff:inbound:tenant:{tenant}"


def notified_key(inbound_id: str) -> str:
    return f"ff:inbound:{inbound_id}:notified"


# -- the routing table (pure) -------------------------------------------------------------


class RoutesError(ValueError):
    """The routing table setting cannot be used; the message says where."""


class InboundRoute(BaseModel):
    """Where the faxes for one called number (or line, or the default) go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    email: str | None = None
    callback_url: str | None = None

    @property
    def notify(self) -> NotifyTarget:
        return NotifyTarget(email=self.email, callback_url=self.callback_url)


@dataclass(frozen=True)
class Match:
    key: str
    """The table entry that matched."""
    route: InboundRoute


_PUNCTUATION = re.compile(r"[\s().\-/]")


def normalise(number: str, region: str = "FR") -> str:
    """A called number as the table compares it: E.164 when it reads as a phone number,
    else the text without punctuation (short internal extensions, odd DID formats)."""
    compact = _PUNCTUATION.sub("", number)
    try:
        return to_e164(compact, region)
    except InvalidNumber:
        return compact


class RouteTable:
    """The DID routing table, checked when it is built (one bad entry refuses them all)."""

    def __init__(self, entries: Mapping[str, InboundRoute], region: str = "FR") -> None:
        self.region = region
        self.exact: dict[str, Match] = {}
        self.prefixes: list[tuple[str, Match]] = []
        self.lines: dict[str, Match] = {}
        self.default: Match | None = None
        for key, route in entries.items():
            match = Match(key, route)
            if key == DEFAULT:
                self.default = match
            elif key.startswith(LINE_PREFIX):
                name = key[len(LINE_PREFIX) :].strip()
                if not name:
                    raise RoutesError(f"{key!r}: a line route needs the line's name")
                self.lines[name] = match
            elif key.endswith("*"):
                prefix = _PUNCTUATION.sub("", key[:-1])
                if not prefix:
                    raise RoutesError(f"{key!r}: an empty prefix (use '*' for the default)")
                self.prefixes.append((prefix, match))
            else:
                self.exact[normalise(key, region)] = match
        self.prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def parse(cls, text: str, region: str = "FR") -> RouteTable:
        """From the ``FAXFLEET_INBOUND_ROUTES`` setting: JSON text, or a JSON file's path;
        empty: no routes (every fax is unrouted)."""
        text = text.strip()
        if not text:
            return cls({}, region)
        if not text.startswith(("{", "[")):
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise RoutesError(f"cannot read the inbound routes file: {exc}") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RoutesError(f"inbound routes are not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise RoutesError("inbound routes must be a JSON object")
        entries = {}
        for key, value in raw.items():
            try:
                entries[key] = InboundRoute.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "route"
                raise RoutesError(f"inbound route {key!r}: {where}: {first['msg']}") from None
        return cls(entries, region)

    def route(self, called: str | None, line: str) -> Match | None:
        """The route of a fax that called ``called`` on ``line`` (None: unrouted)."""
        if called:
            number = normalise(called, self.region)
            if number in self.exact:
                return self.exact[number]
            for prefix, match in self.prefixes:
                if number.startswith(prefix):
                    return match
        if line in self.lines:
            return self.lines[line]
        return self.default


def file_record(event: InboundReceived, match: Match | None) -> InboundFax:
    """The stored record of a received fax routed by ``match``."""
    return InboundFax(
        id=event.inbound_id,
        tenant=match.route.tenant if match else None,
        route=match.key if match else None,
        site=event.site,
        line=event.line,
        called=event.called,
        remote_id=event.remote_id,
        pages=event.pages,
        size=event.size,
        ok=event.ok,
        cause=event.cause,
        detail=event.detail,
        received_at=event.at,
        notify=match.route.notify if match else NotifyTarget(),
    )


def should_notify(fax: InboundFax) -> bool:
    """Notify when at least one page arrived: a call that brought nothing (a voice call,
    a caller that gave up) is filed for the record but mails no one."""
    return fax.tenant is not None and fax.pages > 0


# -- the store -------------------------------------------------------------------------------


class UnknownInbound(KeyError):
    pass


class InboundStore:
    def __init__(self, client: redis.Redis, retention_seconds: int) -> None:
        self.r = client
        self.retention = retention_seconds

    @staticmethod
    def _index(tenant: str | None) -> str:
        return tenant_index(tenant) if tenant is not None else UNROUTED

    def add(self, fax: InboundFax) -> bool:
        """Store a new record; False if it was already stored (a redelivered event)."""
        key = record_key(fax.id)
        if not self.r.set(key, fax.model_dump_json(), nx=True, ex=self.retention):
            return False
        with self.r.pipeline(transaction=True) as pipe:
            pipe.zadd(self._index(fax.tenant), {fax.id: fax.received_at.timestamp()})
            pipe.expire(self._index(fax.tenant), self.retention)
            pipe.execute()
        return True

    def get(self, inbound_id: str) -> InboundFax:
        raw = self.r.get(record_key(inbound_id))
        if raw is None:
            raise UnknownInbound(inbound_id)
        return InboundFax.model_validate_json(raw)

    def list(self, tenant: str | None, limit: int = 50) -> list[InboundFax]:
        """A tenant's received faxes (None: the unrouted ones), newest first."""
        index = self._index(tenant)
        self.r.zremrangebyscore(index, "-inf", time.time() - self.retention)
        ids = [i.decode() for i in self.r.zrevrange(index, 0, limit - 1)]
        if not ids:
            return []
        raws = self.r.mget([record_key(i) for i in ids])
        return [InboundFax.model_validate_json(raw) for raw in raws if raw is not None]

    def document(self, inbound_id: str) -> bytes | None:
        """The whole fax (multi-page TIFF) as the receiving site stored it."""
        return self.r.get(keys.inbound_fax(inbound_id))

    def update(self, inbound_id: str, change: Callable[[InboundFax], InboundFax]) -> InboundFax:
        """Change a record atomically (WATCH), keeping its expiry."""
        key = record_key(inbound_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise UnknownInbound(inbound_id)
                    fax = change(InboundFax.model_validate_json(raw))
                    pipe.multi()
                    pipe.set(key, fax.model_dump_json(), keepttl=True)
                    pipe.execute()
                    return fax
                except redis.WatchError:
                    continue

    def claim_notifications(self, inbound_id: str) -> bool:
        """True once per fax: the notifications are queued by whoever gets it."""
        return bool(self.r.set(notified_key(inbound_id), "1", nx=True, ex=self.retention))
