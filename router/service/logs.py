"""The service's log lines: plain text or one JSON object per line, on stderr."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (and exc for a traceback; worker
    for a worker process of `serve --workers`)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        body: dict[str, str | int] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            body["worker"] = self.worker
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(
    json_lines: bool, stream: TextIO | None = None, worker: int | None = None
) -> None:
    """Route every log record to `stream` (stderr): plain text, or JSON lines; a worker process
    of `serve --workers` says which it is in each line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(worker))
    else:
        where = "" if worker is None else f" [worker {worker}]"
        handler.setFormatter(
            logging.Formatter(PLAIN_FORMAT.replace("%(name)s", f"%(name)s{where}"))
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
