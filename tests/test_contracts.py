"""Shared contracts: document types, number normalisation, Celery priorities and depth."""

from __future__ import annotations

import pytest
import redis

from faxfleet.celery_app import celery_priority, queue_depth
from faxfleet.documents import DocumentType, UnsupportedDocument, detect_type
from faxfleet.numbers import InvalidNumber, to_e164

TEXT_CUT = b"a" * 65535 + "é".encode()  # 2-byte char split by the 65536-byte sample


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", DocumentType.PDF),
        (b"\x00\x00junk%PDF-1.4\n", DocumentType.PDF),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", DocumentType.PNG),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", DocumentType.JPEG),
        (b"II*\x00\x08\x00\x00\x00", DocumentType.TIFF),
        (b"MM\x00*\x00\x00\x00\x08", DocumentType.TIFF),
        (b"Hello,\r\n\tworld\x0c\n", DocumentType.TEXT),
        ("Très cher Müller — ½ €\n".encode(), DocumentType.TEXT),
        (TEXT_CUT, DocumentType.TEXT),
        (b"b" * 65534 + "€".encode() + b"tail", DocumentType.TEXT),
        (b"x" * 70000, DocumentType.TEXT),
    ],
)
def test_detect_type(data: bytes, expected: DocumentType) -> None:
    assert detect_type(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02\x03binary\x00\xfe",
        bytes(range(256)),
        b"\xff\xfe\xfd\xfc\xfb",
        b"PK\x03\x04\x14\x00\x00\x00",
        b"   \n\t  ",
        b"text with a NUL\x00 inside",
        b"\x80" + b"a" * 100,
        b"hello\xff",  # 0xFF is never UTF-8, and nothing was cut
    ],
)
def test_detect_type_refuses(data: bytes) -> None:
    with pytest.raises(UnsupportedDocument):
        detect_type(data)


def test_unsupported_document_is_a_value_error() -> None:
    assert issubclass(UnsupportedDocument, ValueError)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+33 1 42 68 53 00", "FR", "+33142685300"),
        ("+33142685300", "US", "+33142685300"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("01.42.68.53.00", "FR", "+33142685300"),
        ("  +33 1 42 68 53 00  ", "FR", "+33142685300"),
        ("+1 212 555 0100", "FR", "+12125550100"),
        ("+1 (650) 253-0000", "FR", "+16502530000"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("+44 20 7946 0018", "FR", "+442079460018"),
    ],
)
def test_to_e164(raw: str, region: str, expected: str) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "+999",
        "+33 1 42 68 53 00 00 00",
        "+1 212 555 01",
        "1" * 41,
        "+33 " + "1" * 40,
    ],
)
def test_to_e164_refuses(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        to_e164(raw)


@pytest.mark.parametrize(
    ("user", "celery"),
    [(9, 0), (0, 9), (5, 4), (1, 8), (10, 0), (100, 0), (-1, 9), (-50, 9)],
)
def test_celery_priority(user: int, celery: int) -> None:
    assert celery_priority(user) == celery


def test_celery_priority_keeps_the_order() -> None:
    mapped = [celery_priority(p) for p in range(10)]
    assert mapped == sorted(mapped, reverse=True)
    assert sorted(mapped) == list(range(10))


def test_queue_depth(r: redis.Redis) -> None:
    assert queue_depth(r, "q") == 0
    r.lpush("q", "a", "b")
    r.lpush("q\x06\x163", "c", "d", "e")
    r.lpush("q\x06\x169", "f")
    r.lpush("other", "x", "y")
    r.lpush("other\x06\x163", "z")
    assert queue_depth(r, "q") == 6
    assert queue_depth(r, "other") == 3
    assert queue_depth(r, "empty") == 0
