"""A real fax line on one machine, for tests and demos: two iaxmodem software modems
calling each other over IAX2 on loopback, with independent fax software (efax, HylaFAX) as
the far end. See docs/softline.md.
"""

from .efax import EfaxSendReport
from .farend import ReceivedFax
from .line import LineError, SoftLine
from .tiffpages import tiff_page_count

__all__ = [
    "EfaxSendReport",
    "LineError",
    "ReceivedFax",
    "SoftLine",
    "tiff_page_count",
]
