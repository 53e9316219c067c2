"""One limit on repeated log lines, for every handler that writes the server's log.

A client that sends the same bad input again and again must not fill the disk with the
same line: each message template (logger, level, format string) may be written
``LOG_REPEAT_LIMIT`` times per ``LOG_REPEAT_WINDOW`` seconds. The last line allowed says
that similar lines are now suppressed; the first one written after the window says how
many were.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from flask import Flask
from flask.logging import default_handler


@dataclass
class _Template:
    started: float
    written: int = 1
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """At most ``limit`` records of one template per ``window`` seconds."""

    MAX_TEMPLATES = 1000  # the templates come from the code; this only bounds memory

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        super().__init__()
        self.limit = limit
        self.window = window
        self._templates: dict[tuple[str, int, str], _Template] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_repeat_filter", None)  # seen by another handler
        if decided is not None:
            return decided
        record._repeat_filter = allowed = self._decide(record)
        return allowed

    def _decide(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            template = self._templates.get(key)
            if template is None or now - template.started >= self.window:
                if template is None and len(self._templates) >= self.MAX_TEMPLATES:
                    self._forget(now)
                self._templates[key] = _Template(now)
                if template is not None and template.suppressed:
                    _append(record, f"[{template.suppressed} similar lines were suppressed]")
                return True
            if template.written >= self.limit:
                template.suppressed += 1
                return False
            template.written += 1
            if template.written == self.limit:
                _append(record, f"[similar lines suppressed for up to {self.window:g} s]")
            return True

    def _forget(self, now: float) -> None:
        self._templates = {k: t for k, t in self._templates.items()
                           if now - t.started < self.window}
        while len(self._templates) >= self.MAX_TEMPLATES:
            del self._templates[next(iter(self._templates))]


def _append(record: logging.LogRecord, note: str) -> None:
    record.msg, record.args = f"{record.getMessage()} {note}", None


LOG_LIMIT = RepeatFilter()


def init_log_limit(app: Flask) -> None:
    """Apply ``LOG_LIMIT`` (configured from ``app``) to the handlers of the server's log:
    Flask's (the ``app`` loggers), python-socketio's and Engine.IO's, and Python's
    last-resort handler (loggers with no handler at all). The root logger's handlers are
    left alone: whoever configures them (a log config, pytest) decides for them."""
    LOG_LIMIT.limit = app.config["LOG_REPEAT_LIMIT"]
    LOG_LIMIT.window = app.config["LOG_REPEAT_WINDOW"]
    handlers = [default_handler, logging.lastResort]
    for name in ("socketio.server", "engineio.server"):
        handlers.extend(logging.getLogger(name).handlers)
    for handler in handlers:
        if handler is not None and LOG_LIMIT not in handler.filters:
            handler.addFilter(LOG_LIMIT)
