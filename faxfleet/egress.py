"""Outbound HTTP to addresses a tenant chose: result and inbound callbacks.

A callback URL is whatever a tenant typed, so the notifier must not become the tenant's
way into the fleet's own network (the routing admin API, Redis, a cloud metadata service).
This module decides where a callback may go and makes sure it goes only there:

* :func:`check_url` refuses what is not a plain ``http``/``https`` URL with a host (no
  user info); the API calls it at submission, the notifier again before sending.
* :func:`not_public` classifies an IP address: loopback, private (RFC 1918), shared
  (CGNAT, 100.64/10), link-local, multicast, documentation, benchmarking, reserved and
  unspecified ranges are not public, nor are the IPv6 forms that lead to them (unique
  local, link-local, site-local, IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo, ...).
  The test is written out here (not ``ipaddress.is_global``, which changes with Python
  versions and counts multicast as global).
* :class:`AllowList` is ``FAXFLEET_CALLBACK_ALLOW``: addresses, networks or ``host:port``
  entries an administrator opened for private targets (an internal webhook gateway).
* :class:`GuardedTransport` is an httpx transport that resolves the host itself, checks
  every address, and connects to an address it checked: no second DNS lookup, so a name
  that answers with a public address for the check and a private one for the connection
  (DNS rebinding) gets nowhere. TLS still verifies the certificate for the URL's host name
  (and sends it as SNI), and the ``Host`` header is the URL's.

Redirects are not followed (a 3xx answer is a failed delivery); if a client built on
this transport followed them, every hop would be checked again, as each new connection is.
Proxies from the environment are not used: a callback always goes straight to the address
that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses``: the DNS boundary, replaceable in tests."""

MAX_URL_LENGTH = 2048
MAX_ADDRESSES_TRIED = 4
"""Allowed addresses of one host tried in turn (each with the connect timeout)."""
SCHEMES = ("http", "https")
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._:")
_LEGACY_V4_CHARACTERS = frozenset("0123456789abcdefx.")


class BadURL(ValueError):
    """A callback URL that is not a plain http(s) URL with a host; the message says why."""


class Refused(Exception):
    """A callback host whose every address is refused by policy (not public, not allowed)."""

    def __init__(self, host: str, port: int, refused: dict[str, str]) -> None:
        why = ", ".join(f"{addr} ({reason})" for addr, reason in refused.items())
        super().__init__(f"{host}:{port} is not a public address: {why or 'no address'}")
        self.host = host
        self.port = port
        self.refused = refused


# ----------------------------------------------------------------------------------------
# Addresses


def _nets(*specs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in specs)


# IANA IPv4 special-purpose registry, the ranges that are not globally reachable (and a
# few that are, but are no webhook's address: anycast relays, protocol assignments).
_V4_NOT_PUBLIC = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255, broadcast
)

# IPv6: only global unicast (2000::/3) can be public, minus what is carved out of it.
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_NOT_PUBLIC = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("100::/64", "discard"),
    ("64:ff9b:1::/48", "local NAT64"),
    ("2001::/32", "Teredo"),
    ("2001::/23", "IETF protocol assignment"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_V6_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V6_6TO4 = ipaddress.IPv6Network("2002::/16")

NEVER = frozenset({"unspecified", "multicast"})
"""Reasons no allow-list entry overrides: no callback is ever sent there."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to: mapped, NAT64 or 6to4."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _V6_NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def not_public(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public address (``"loopback"``, ``"private"``, ...), or
    ``None`` if it is one. An IPv6 address that embeds an IPv4 address (mapped, NAT64,
    6to4) is judged by the IPv4 address it leads to."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_v4(ip)
        if embedded is not None:
            inner = not_public(embedded)
            if ip.ipv4_mapped is not None:
                return inner and f"IPv4-mapped {inner}"
            return inner and f"{'6to4' if ip.sixtofour else 'NAT64'} to {inner}"
        for net, reason in _V6_NOT_PUBLIC:
            if ip in net:
                return reason
        if ip not in _V6_GLOBAL_UNICAST:
            return "reserved"
        return None
    for net, reason in _V4_NOT_PUBLIC:
        if ip in net:
            return reason
    return None


# ----------------------------------------------------------------------------------------
# Allow-list


@dataclass(frozen=True)
class _Entry:
    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def matches(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address.version == self.network.version and address in self.network
        return self.host == host.lower().rstrip(".")


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"FAXFLEET_CALLBACK_ALLOW entry {entry!r}: bad port {text!r}")
    return int(text)


def _network(text: str, entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        if "/" in text or ":" in text or text.replace(".", "").isdigit():
            raise ValueError(
                f"FAXFLEET_CALLBACK_ALLOW entry {entry!r}: not an address or network"
            ) from None
        return None


def _parse_entry(entry: str) -> _Entry:
    port: int | None = None
    body = entry
    if body.startswith("["):  # [IPv6 or IPv6/len]:port
        inside, sep, rest = body[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"FAXFLEET_CALLBACK_ALLOW entry {entry!r}: unbalanced [ ]")
        body, port = inside, (_port(rest[1:], entry) if rest else None)
        network = _network(body, entry)
        if network is None or network.version != 6:
            raise ValueError(f"FAXFLEET_CALLBACK_ALLOW entry {entry!r}: not an IPv6 address")
        return _Entry(network=network, port=port)
    if body.count(":") == 1:  # IPv4, IPv4/len or a host name, with a port
        body, _, port_text = body.partition(":")
        port = _port(port_text, entry)
    network = _network(body, entry)
    if network is not None:
        return _Entry(network=network, port=port)
    name = body.lower().rstrip(".")
    if not name or any(c.isspace() or c in "/@?#" for c in name):
        raise ValueError(f"FAXFLEET_CALLBACK_ALLOW entry {entry!r}: not a host name")
    return _Entry(host=name, port=port)


@dataclass(frozen=True)
class AllowList:
    """Non-public callback targets an administrator allowed (``FAXFLEET_CALLBACK_ALLOW``).

    Comma-separated entries, each one of:

    * an address or network, any port: ``10.20.0.5``, ``10.20.0.0/16``, ``fd00::/8``;
    * the same on one port: ``10.20.0.5:8443``, ``10.20.0.0/16:443``, ``[fd00::1]:443``,
      ``[fd00::/8]:443``;
    * a host name, with or without a port: ``hooks.internal``, ``hooks.internal:8443``:
      a URL with exactly this host may reach whatever address the name resolves to.

    Unspecified (``0.0.0.0``, ``::``) and multicast addresses stay refused whatever the
    list says."""

    entries: tuple[_Entry, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        items = [item.strip() for item in (text or "").split(",") if item.strip()]
        return cls(tuple(_parse_entry(item) for item in items))

    def permits(self, host: str, address: IPAddress, port: int) -> bool:
        return any(entry.matches(host, address, port) for entry in self.entries)


def refusal(host: str, address: IPAddress, port: int, allow: AllowList) -> str | None:
    """Why a callback to ``host`` may not connect to ``address``:``port`` (the reason
    :func:`not_public` gives), or ``None`` if it may: the address is public, or the
    allow-list opens it (never an unspecified or multicast one)."""
    reason = not_public(address)
    if reason is None:
        return None
    if reason.split()[-1] not in NEVER and allow.permits(host, address, port):
        return None
    return reason


def default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


# ----------------------------------------------------------------------------------------
# URLs


def check_url(url: str) -> httpx.URL:
    """The parsed callback URL, or :class:`BadURL`: ``http``/``https`` only, a host, no
    user info, at most 2048 characters."""
    if len(url) > MAX_URL_LENGTH:
        raise BadURL(f"is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise BadURL("contains spaces or control characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise BadURL(f"is not a URL ({exc})") from None
    if parsed.scheme not in SCHEMES:
        raise BadURL("must be an http:// or https:// URL")
    if not parsed.host:
        raise BadURL("has no host")
    if parsed.userinfo:
        raise BadURL("must not carry a user name or password")
    if not set(parsed.raw_host.decode("ascii", "replace")) <= _HOST_CHARACTERS:
        raise BadURL("has a malformed host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise BadURL(f"has a bad port {parsed.port}")
    return parsed


def literal_address(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP address literal, including the forms the C
    library reads as IPv4 (``2130706433``, ``0x7f.1``, ``0177.0.0.1``)."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and set(text.lower()) <= _LEGACY_V4_CHARACTERS:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the system resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


# ----------------------------------------------------------------------------------------
# Connecting


@dataclass
class Guard:
    """Resolves a callback host once and says which of its addresses may be connected to;
    remembers where it connected (``connected``) and whether that address is public."""

    allow: AllowList = field(default_factory=AllowList)
    resolve: Resolver = system_resolve
    connected: IPAddress | None = None

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` a callback may go to, in resolver order; raises
        :class:`Refused` if there is none (``OSError`` if the name does not resolve)."""
        literal = literal_address(host)
        raw = [str(literal)] if literal is not None else self.resolve(host, port)
        allowed: list[IPAddress] = []
        refused: dict[str, str] = {}
        for text in raw:
            address = ipaddress.ip_address(text)
            reason = refusal(host, address, port, self.allow)
            if reason is None:
                allowed.append(address)
            else:
                refused[str(address)] = reason
        if not allowed:
            raise Refused(host, port, refused)
        return allowed

    @property
    def connected_public(self) -> bool:
        return self.connected is not None and not_public(self.connected) is None


class _GuardedBackend(httpcore.SyncBackend):
    """Opens TCP connections only to the addresses the guard allows, by address."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.addresses(host, port)
        except OSError as exc:  # the name does not resolve
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            try:
                stream = super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.guard.connected = address
            return stream
        assert failure is not None
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every connection goes through a :class:`Guard`.

    TLS is verified against the system's (or ``SSL_CERT_FILE``'s) authorities unless an
    ``ssl_context`` is given; environment proxies are never used."""

    def __init__(self, guard: Guard, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(trust_env=False, retries=0)
        self.guard = guard
        # httpx builds its connection pool with the default network backend: replaced by
        # one whose backend connects to checked addresses only (one request per client,
        # so nothing is kept alive).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=True),
            max_connections=10,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            network_backend=_GuardedBackend(guard),
        )


def client(guard: Guard, timeout: float, ssl_context: ssl.SSLContext | None = None) -> httpx.Client:
    """An httpx client for one callback: guarded, no redirects, no environment proxies."""
    return httpx.Client(
        transport=GuardedTransport(guard, ssl_context),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
