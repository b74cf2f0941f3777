"""Class 2.0 fax modems (ITU-T T.32): the modem runs T.30, the host sends pages and reads
status. ``codes`` reads what the modem says, ``driver`` sends a fax through one, ``line``
offers it as a fleet line."""
