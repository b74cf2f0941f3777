"""Structured logs: every record says which job, recipient, site and line it is about.

Call sites pass context as keyword arguments (``log.info("dialing", job=..., site=...)``);
the formatter renders ``key=value`` pairs (text) or one JSON object per line (json).

No secret reaches a log line: the formatter replaces every secret the process was given
(:meth:`faxfleet.settings.Settings.secret_values`: API and admin keys, the webhook
secret, passwords, URL passwords) by ``***`` in the whole line, exception text included,
whatever put it there; so does a filter on the handlers uvicorn installs for its own
loggers (which do not reach the root logger).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

from faxfleet.redact import Scrubber

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _ContextFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.fmt = fmt
        self.scrub = Scrubber(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        ctx = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        if self.fmt == "json":
            doc = {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
                **{k: _plain(v) for k, v in ctx.items()},
            }
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            return json.dumps(doc, default=str)
        pairs = " ".join(f"{k}={_plain(v)}" for k, v in ctx.items())
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<5} {record.name}: "
        line += record.getMessage() + (f" {pairs}" if pairs else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | bool) or value is None else str(value)


class ContextLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def _emit(self, level: int, msg: str, exc: bool, ctx: dict[str, Any]) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, msg, extra=ctx, exc_info=exc, stacklevel=3)

    def debug(self, msg: str, **ctx: Any) -> None:
        self._emit(logging.DEBUG, msg, False, ctx)

    def info(self, msg: str, **ctx: Any) -> None:
        self._emit(logging.INFO, msg, False, ctx)

    def warning(self, msg: str, **ctx: Any) -> None:
        self._emit(logging.WARNING, msg, False, ctx)

    def error(self, msg: str, **ctx: Any) -> None:
        self._emit(logging.ERROR, msg, False, ctx)

    def exception(self, msg: str, **ctx: Any) -> None:
        self._emit(logging.ERROR, msg, True, ctx)


class _ScrubFilter(logging.Filter):
    """Scrubs a record's message and exception text for handlers with formatters of
    their own (uvicorn's)."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        if self.scrub.secrets:
            # Arguments are scrubbed one by one, not merged into the message: a formatter
            # may read them (uvicorn's access log takes its fields from ``args``).
            if isinstance(record.msg, str):
                record.msg = self.scrub(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(self._arg(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: self._arg(v) for k, v in record.args.items()}
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
        return True

    def _arg(self, value: Any) -> Any:
        if value is None or isinstance(value, int | float):
            return value  # numbers stay numbers, for formats such as %d
        return self.scrub(str(value))


_OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def get_logger(name: str) -> ContextLogger:
    return ContextLogger(name)


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Install the structured formatter on the root logger (idempotent); ``secrets``
    never appear in a line (each is replaced by ``***``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_faxfleet", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ContextFormatter(fmt, secrets))
    handler._faxfleet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    scrub = _ScrubFilter(Scrubber(secrets))
    for name in _OWN_HANDLER_LOGGERS:
        for other in logging.getLogger(name).handlers:
            for old in [f for f in other.filters if isinstance(f, _ScrubFilter)]:
                other.removeFilter(old)
            other.addFilter(scrub)
