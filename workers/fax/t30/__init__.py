"""The T.30 fax protocol, pure: no serial port, no threads, no clocks.

``hdlc`` frames and checks control frames, ``frames`` names them and codes the capability
fields, ``negotiate`` picks the session parameters, ``pagedata`` turns pages into line data
and back, ``ecm`` cuts pages into error-correction blocks, and ``engine`` is the state
machine that ties them together. :mod:`workers.fax.session` runs an engine over a modem.
"""
