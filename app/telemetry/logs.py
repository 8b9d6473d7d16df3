"""Structured logs: JSON lines on stderr, one per chat request, never with secrets, and with
the visitor's words only when the owner turns LLMGW_LOG_CONTENT on."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

REQUEST_LOGGER = "llmgw.request"
# Attributes every LogRecord has; anything else was passed with `extra` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for every llmgw logger; httpx's per-request lines stay quiet."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def log_request(**fields: object) -> None:
    """The one line a chat request leaves behind."""
    logging.getLogger(REQUEST_LOGGER).info(
        "chat", extra={k: v for k, v in fields.items() if v is not None}
    )
