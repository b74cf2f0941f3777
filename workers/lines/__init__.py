"""Lines: the interface the send task drives, and its implementations."""

from workers.lines.base import Call, CallHooks, Line, SendReport

__all__ = ["Call", "CallHooks", "Line", "SendReport"]
