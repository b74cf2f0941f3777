"""The T.30 fax protocol, pure: no serial port, no threads, no clocks.

``hdlc`` frames and checks control frames, ``frames`` names them and codes the capability
fields, ``negotiate`` picks the session parameters, ``t4codes``/``t4``/``pagedata`` turn
pages into line data and back, ``ecm`` cuts pages into error-correction blocks, ``events``
and ``engine`` are the state machine, and ``loopback`` runs two engines on a simulated
line. :mod:`workers.fax.session` runs an engine over a modem. See docs/t30.md.
"""
