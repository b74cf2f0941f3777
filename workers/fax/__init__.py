"""Real fax transmission: the T.30 protocol (``t30``, pure) and the modems it drives
(``modem``, serial I/O through pyserial)."""
