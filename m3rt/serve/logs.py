"""The server's logging: uvicorn's and m3rt's loggers on stderr, as plain lines or (--json-logs) one JSON object
per line, the access log's fields (request id, method, path, status, ms, bytes) as keys of their own."""

from __future__ import annotations

import json
import logging
import time

# Fields of a record's `extra` written as keys of their own in JSON lines.
FIELDS = ("request_id", "method", "path", "status", "ms", "bytes_out", "client")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(json_logs: bool, level: str) -> dict:
    """A logging.config.dictConfig for uvicorn's log_config (uvicorn's own access log is off: Guard logs)."""
    level = level.upper()
    formatter = {"()": JsonFormatter} if json_logs else {"format": "%(levelname)s: %(name)s: %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "m3rt", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"m3rt": formatter},
            "handlers": {"stderr": handler},
            "loggers": {"uvicorn": logger, "uvicorn.error": {"level": level},
                        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}, "m3rt": logger}}
