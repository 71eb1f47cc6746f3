"""Log hygiene: phone numbers masked (``+1650***0000``) wherever a record is written;
JSON lines with the task's run, list and task ids when ``CXSWEEP_LOG_FORMAT=json``."""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# A run of 7+ digits, optionally led by "+": long enough to be a phone number.
# Not inside a word or an id: a task id's digit groups (a4389e76-1234-4567-...) and a
# duration (0.0216053s) are not phone numbers.
_NUMBER = re.compile(r"(?<![\w.\-])\+?\d[\d\-. ()]{5,}\d(?![\w\-])")
_DECIMAL_FRACTION = re.compile(r"\.\d{5,}")


def mask_number(text: str) -> str:
    if _DECIMAL_FRACTION.search(text):
        return text
    digits = re.sub(r"\D", "", text)
    prefix = "+" if text.startswith("+") else ""
    if len(digits) < 7:
        return text
    return f"{prefix}{digits[:4]}***{digits[-4:]}"


def mask_numbers(text: str) -> str:
    return _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


# --- structured logs ----------------------------------------------------------------

CONTEXT_FIELDS = ("run_id", "list_id", "sweep_id", "task_id", "task_name")

# What the current task works on; set by the worker around each task (a contextvar, so
# each thread of a threads pool keeps its own).
_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "cxsweep_log_context", default=_EMPTY
)


def bind(**fields: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Add fields to every record logged from here on (in this thread/context)."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v})
    return _context.set(merged)


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


def bound() -> Mapping[str, str]:
    return _context.get()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the task's context.

    Numbers are masked here too, not only by ``MaskingFilter``: tracebacks and
    formatter-added text never pass through a filter.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_numbers(record.getMessage()),
        }
        context = bound()
        for name in CONTEXT_FIELDS:
            # A field given with the record (logger.info(..., extra={"run_id": ...})) wins.
            value = getattr(record, name, None) or context.get(name)
            if value:
                entry[name] = str(value)
        if record.exc_info:
            entry["exc"] = mask_numbers(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = mask_numbers(record.exc_text)
        if record.stack_info:
            entry["stack"] = mask_numbers(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
