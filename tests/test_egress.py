"""Where a callback may go (faxfleet/egress.py), without a network: the address
classifier, the allow-list (FAXFLEET_CALLBACK_ALLOW), URL checks, and the checks made
when a fax is submitted."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from faxfleet import egress
from faxfleet.egress import AllowList, Guard, Refused, check_url, literal_address, not_public
from faxfleet.messages import FaxRequest, NotifyTarget
from faxfleet.settings import Settings
from scheduler import intake

# -- the classifier -------------------------------------------------------------------------

NOT_PUBLIC = [
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata services
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.2.10", "documentation"),
    ("192.88.99.1", "6to4 relay"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fec0::1", "site-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("100::1", "discard"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001::1", "Teredo"),
    ("2001:10::1", "IETF protocol assignment"),
    ("5f00::1", "segment routing"),
    ("4000::1", "reserved"),
    ("64:ff9b:1::a00:1", "local NAT64"),
    # IPv6 forms that lead to an IPv4 address: judged by that address
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:7f00:1", "IPv4-mapped loopback"),
    ("::ffff:10.1.2.3", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
    ("64:ff9b::7f00:1", "NAT64 to loopback"),
    ("64:ff9b::192.168.0.1", "NAT64 to private"),
    ("2002:7f00:1::1", "6to4 to loopback"),
    ("2002:a00:1::", "6to4 to private"),
    ("2002:a9fe:a9fe::1", "6to4 to link-local"),
]

PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "192.0.1.1",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2a00:1450:4007:80f::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 to a public address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize(("address", "reason"), NOT_PUBLIC)
def test_non_public_addresses_are_classified(address: str, reason: str) -> None:
    assert not_public(address) == reason
    assert not_public(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert not_public(address) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        # What the C library (inet_aton) reads as IPv4: the resolver would turn these into
        # loopback, so they are judged as the address they are.
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
    ],
)
def test_literal_addresses_in_every_form(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "hooks.acme.example", "beef", "cafe.example"])
def test_host_names_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


# -- the allow-list -------------------------------------------------------------------------


def _permits(allow: str, host: str, address: str, port: int) -> bool:
    return AllowList.parse(allow).permits(host, ipaddress.ip_address(address), port)


@pytest.mark.parametrize(
    ("allow", "host", "address", "port", "permitted"),
    [
        ("", "127.0.0.1", "127.0.0.1", 80, False),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1", 80, True),
        ("127.0.0.1", "localhost", "127.0.0.1", 8443, True),
        ("127.0.0.1", "127.0.0.2", "127.0.0.2", 80, False),
        ("10.20.0.0/16", "hooks", "10.20.3.4", 80, True),
        ("10.20.0.0/16", "hooks", "10.21.0.1", 80, False),
        ("10.20.0.0/16:443", "hooks", "10.20.3.4", 443, True),
        ("10.20.0.0/16:443", "hooks", "10.20.3.4", 6379, False),
        ("10.0.0.5:8080, 10.0.0.6", "h", "10.0.0.6", 1, True),
        ("fd00::/8", "h", "fd12::1", 80, True),
        ("fd00::/8", "h", "fe80::1", 80, False),
        ("[fd00::/8]:443", "h", "fd12::1", 443, True),
        ("[fd00::/8]:443", "h", "fd12::1", 80, False),
        ("[::1]:8080", "h", "::1", 8080, True),
        ("::1", "h", "::1", 1, True),
        ("::1", "h", "127.0.0.1", 1, False),  # no family crossing
        ("hooks.internal:8443", "hooks.internal", "10.9.9.9", 8443, True),
        ("hooks.internal:8443", "HOOKS.internal.", "10.9.9.9", 8443, True),
        ("hooks.internal:8443", "hooks.internal", "10.9.9.9", 8444, False),
        ("hooks.internal:8443", "evil.example", "10.9.9.9", 8443, False),
        ("Hooks.Internal", "hooks.internal", "192.168.0.1", 1, True),
    ],
)
def test_allow_list_entries(
    allow: str, host: str, address: str, port: int, permitted: bool
) -> None:
    assert _permits(allow, host, address, port) is permitted


@pytest.mark.parametrize(
    "entry", ["300.1.1.1", "10.0.0.0/33", "[::1", "[10.0.0.1]:80", "h:0", "h:x", "a b", "h:99999"]
)
def test_a_bad_allow_list_stops_the_node_naming_the_variable(entry: str) -> None:
    with pytest.raises(ValueError, match="FAXFLEET_CALLBACK_ALLOW"):
        AllowList.parse(entry)
    with pytest.raises(ValidationError, match="FAXFLEET_CALLBACK_ALLOW"):
        Settings(callback_allow=entry)


def test_settings_read_the_allow_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().callback_allow_list == AllowList()  # strict by default
    monkeypatch.setenv("FAXFLEET_CALLBACK_ALLOW", "10.1.0.0/16:443, hooks.internal")
    allow = Settings().callback_allow_list
    assert allow.permits("x", ipaddress.ip_address("10.1.2.3"), 443)
    assert not allow.permits("x", ipaddress.ip_address("10.1.2.3"), 80)


# -- the guard, with a resolver that is a table ---------------------------------------------


def _guard(allow: str, table: dict[str, list[str]]) -> Guard:
    return Guard(AllowList.parse(allow), lambda host, port: table[host])


def test_guard_keeps_only_allowed_addresses_in_resolver_order() -> None:
    guard = _guard("", {"mixed.example": ["10.0.0.1", "8.8.8.8", "::1", "2606:4700::1"]})
    assert [str(a) for a in guard.addresses("mixed.example", 443)] == ["8.8.8.8", "2606:4700::1"]


def test_guard_refuses_a_name_with_no_public_address() -> None:
    guard = _guard("", {"internal.example": ["10.0.0.1", "fd00::1"]})
    with pytest.raises(Refused) as caught:
        guard.addresses("internal.example", 443)
    assert caught.value.refused == {"10.0.0.1": "private", "fd00::1": "unique local"}


@pytest.mark.parametrize("allow", ["0.0.0.0/0", "0.0.0.0", "224.0.0.0/4", "::/0"])
def test_unspecified_and_multicast_stay_refused_whatever_the_allow_list(allow: str) -> None:
    guard = _guard(allow, {"a": ["0.0.0.0"], "b": ["224.0.0.1"], "c": ["::"], "d": ["ff02::1"]})
    for host in "abcd":
        with pytest.raises(Refused):
            guard.addresses(host, 80)


def test_guard_does_not_ask_the_resolver_about_literals() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise AssertionError(f"asked about {host}")

    guard = Guard(AllowList(), resolver)
    with pytest.raises(Refused):
        guard.addresses("2130706433", 80)
    assert [str(a) for a in guard.addresses("8.8.8.8", 80)] == ["8.8.8.8"]


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://127.0.0.1:6379/_INFO", "http:// or https://"),
        ("hooks.example/x", "http:// or https://"),
        ("http:///x", "no host"),
        ("https://user:secret@hooks.example/x", "user name or password"),
        ("https://user@hooks.example/x", "user name or password"),
        ("https://hooks.example:99999/x", "bad port"),
        ("https://hooks.example:0/x", "bad port"),
        ("https://hooks.example/a b", "spaces or control"),
        ("https://hooks.example/x\r\nX-Injected: 1", "spaces or control"),
        ("https://ho%6fks.example/x", "malformed host"),
        ("https://[fe80::1%25eth0]/x", "malformed host"),
        ("https://hooks.example/" + "x" * 2100, "longer than 2048"),
    ],
)
def test_bad_callback_urls(url: str, reason: str) -> None:
    with pytest.raises(egress.BadURL, match=reason):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.acme.example/fax?tenant=1#x",
        "http://hooks.acme.example:8080/fax",
        "HTTPS://Hooks.Acme.Example/fax",
        "https://[2606:4700:4700::1111]/fax",
        "https://bücher.example/fax",
    ],
)
def test_good_callback_urls(url: str) -> None:
    assert check_url(url).scheme in ("http", "https")


# -- at submission --------------------------------------------------------------------------


def _request(callback_url: str) -> FaxRequest:
    return FaxRequest(to=["+33142685300"], notify=NotifyTarget(callback_url=callback_url))


def _validate(callback_url: str, settings: Settings | None = None) -> None:
    intake.validate(
        _request(callback_url),
        [intake.Upload("a.txt", b"hello")],
        settings or Settings(),
        {"paris"},
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8041/v1/sites", "127.0.0.1 is not a public address (loopback)"),
        ("http://[::1]:6390/", "::1 is not a public address (loopback)"),
        ("http://2130706433:6390/", "127.0.0.1 is not a public address (loopback)"),
        ("http://169.254.169.254/latest/meta-data", "(link-local)"),
        ("http://10.0.0.7/", "(private)"),
        ("http://[::ffff:192.168.1.1]/", "(IPv4-mapped private)"),
        ("http://0.0.0.0:8040/", "(unspecified)"),
        ("ftp://hooks.example/x", "notify.callback_url must be an http:// or https:// URL"),
        ("https://u:p@hooks.example/x", "notify.callback_url must not carry a user name"),
        ("https:///x", "notify.callback_url has no host"),
    ],
)
def test_submission_refuses_callbacks_that_cannot_be_delivered(url: str, reason: str) -> None:
    with pytest.raises(intake.Rejected) as caught:
        _validate(url)
    assert caught.value.status == 422
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://hooks.acme.example/fax", ""),  # a name: checked when sent
        ("http://localhost:8080/fax", ""),  # likewise (refused then, as loopback)
        ("https://93.184.215.14/fax", ""),
        ("http://127.0.0.1:8080/fax", "127.0.0.1:8080"),
        ("http://10.1.2.3/fax", "10.0.0.0/8"),
        ("http://[fd00::5]:8443/fax", "[fd00::/8]:8443"),
    ],
)
def test_submission_accepts_public_and_allowed_callbacks(url: str, allow: str) -> None:
    _validate(url, Settings(callback_allow=allow))


def test_submission_refuses_an_allowed_address_on_another_port() -> None:
    with pytest.raises(intake.Rejected, match="not a public address"):
        _validate("http://127.0.0.1:6390/", Settings(callback_allow="127.0.0.1:8080"))
