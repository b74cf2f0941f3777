"""Fax modems over serial lines (pyserial): the AT command layer (``at``), DLE framing
(``dle``) and the Class 1 primitives the T.30 engine drives (``class1``)."""
