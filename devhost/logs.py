"""The host's console log lines: time, instance, level, logger, message, then the record's own
fields (what the app passed as `extra=`) as `name=value`. The host knows nothing of them: an
app that tags its records (a job id, an attempt) can be followed in plain text, as Application
Insights shows the same fields as custom dimensions."""

from __future__ import annotations

import json
import logging
from typing import Any

# What every LogRecord has: anything else on a record came from `extra=` (or a filter).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        return json.dumps(value, default=str, separators=(",", ":"))
    # Quoted when it would not read as one word.
    return json.dumps(value) if not value or any(c.isspace() or c in '"=' for c in value) else value


class ExtrasFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        fields = [f"{name}={_text(value)}" for name, value in record.__dict__.items() if name not in _STANDARD]
        # Before any traceback, which format() appends on the lines below.
        return f"{line} {' '.join(fields)}" if fields else line
