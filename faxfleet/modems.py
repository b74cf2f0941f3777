"""How one fax modem line of a site is configured (``FAXFLEET_MODEMS``, a JSON list).

A site worker with ``line_kind = "modem"`` drives one line per entry. The model is
validated when the settings are read, so a typo in a modem's configuration stops the
worker at start with a message naming the modem and the field, instead of failing the
first fax sent on that line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RATES = (14400, 12000, 9600, 7200, 4800, 2400)
"""The page-data bit rates a line may be limited to (V.17, V.29, V.27 ter)."""


class ModemLine(BaseModel):
    """One modem line of a site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    """The line's name: in the site's published status, in logs and in attempt results."""
    url: str = Field(min_length=1)
    """pyserial URL: ``/dev/ttyACM0``, ``/dev/serial/by-id/...``, ``rfc2217://host:port``
    or ``socket://host:port``."""
    fax_class: Literal["1", "1.0", "2.0"] = "1"
    """``1``/``1.0``: the worker runs T.30 itself; ``2.0``: the modem does."""
    local_id: str = Field("", max_length=20)
    """The TSI (sending) and CSI (answering) shown to the far end."""
    max_rate: int = 14400
    """Fastest page-data bit rate offered; lower it for a line known to be noisy."""
    ecm: bool = True
    """Offer error correction mode (Class 1 lines; Class 2.0 modems decide for themselves)."""
    flow: Literal["xonxoff", "rtscts", "none"] = "xonxoff"
    baudrate: int = Field(115200, gt=0)
    """DTE speed; ignored by ptys and TCP links."""
    did: str | None = None
    """The number this line answers for: the called number of faxes it receives."""
    answer: bool = False
    """Whether this line takes inbound calls while it is idle."""

    @field_validator("max_rate")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in RATES:
            raise ValueError(f"max_rate must be one of {', '.join(map(str, RATES))}")
        return value

    @field_validator("local_id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable():
            raise ValueError("local_id must be printable ASCII (it is sent in TSI/CSI frames)")
        return value
