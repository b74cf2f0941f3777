"""Destination numbers: normalised to E.164 at the door, with a reason when refused."""

from __future__ import annotations

import phonenumbers


class InvalidNumber(ValueError):
    """A destination that cannot be dialled, with a reason a user can act on."""


def to_e164(raw: str, default_region: str = "FR") -> str:
    """Normalise ``raw`` (international ``+...`` or national in ``default_region``)."""
    text = raw.strip()
    if not text:
        raise InvalidNumber("the number is empty")
    if len(text) > 40:
        raise InvalidNumber("the number is too long")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{raw!r} is not a phone number ({exc._msg})") from None
    if parsed.extension:
        raise InvalidNumber(
            f"{raw!r} has an extension ({parsed.extension}): a fax is sent to a number, "
            "not an extension; give the fax machine's own number"
        )
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(f"{raw!r} has the wrong number of digits for its country")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"{raw!r} is not a valid number in its numbering plan")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
