"""faxfleet: a fax server fleet. This package holds what the services share."""

__version__ = "0.1.0"
