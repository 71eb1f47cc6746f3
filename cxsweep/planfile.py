"""A run's plan as a file an operator can review, keep, and apply later.

JSON lines: a header line, then one line per intended change::

    {"cxsweep_plan": 1, "run_id": ..., "list_id": ..., "backend": ..., "created_at": ...}
    {"contact_id": "c-1", "action": "update", "phone_before": "(650) 253-0000",
     "phone_after": "+16502530000", "reason": null, "before": {...}, "after": {...}}
    {"contact_id": "c-2", "action": "remove", "phone_before": "n/a", "phone_after": null,
     "reason": "unparseable", "before": {...}, "after": null}

Contacts left as they are ("keep") are not listed: applying them would do nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cxsweep.audit import iso, now
from cxsweep.errors import CxsweepError
from cxsweep.runs import PlanEntry, RunStore

FORMAT_VERSION = 1


class PlanFileError(CxsweepError):
    """The plan file is not one cxsweep wrote (or was edited into a wrong shape)."""


def _primary(fields: dict[str, Any] | None) -> Any:
    return next(iter(fields.values()), None) if fields else None


def write_plan(store: RunStore, out: IO[str], backend: str) -> int:
    meta = store.meta()
    header = {
        "cxsweep_plan": FORMAT_VERSION,
        "run_id": store.run_id,
        "list_id": meta.get("list_id"),
        "backend": backend,
        "created_at": iso(now()),
    }
    out.write(json.dumps(header) + "\n")
    written = 0
    for kind in ("update", "remove"):
        for entry in store.iter_plan(kind):
            line = {
                "contact_id": entry.contact_id,
                "action": kind,
                "phone_before": _primary(entry.before),
                "phone_after": _primary(entry.after),
                "reason": entry.reason,
                "before": entry.before,
                "after": entry.after,
            }
            out.write(json.dumps(line) + "\n")
            written += 1
    return written


def read_plan(path: str | Path) -> tuple[dict[str, Any], Iterator[PlanEntry]]:
    """The header, and the entries (read lazily, validated line by line)."""
    source = Path(path)
    try:
        handle = source.open(encoding="utf-8")
    except OSError as exc:
        raise PlanFileError(f"cannot read plan {source}: {exc.strerror}") from None
    first = handle.readline()
    try:
        header = json.loads(first)
    except ValueError:
        handle.close()
        raise PlanFileError(f"{source}:1: not a cxsweep plan (no JSON header)") from None
    if not isinstance(header, dict) or header.get("cxsweep_plan") != FORMAT_VERSION:
        handle.close()
        raise PlanFileError(f"{source}:1: not a cxsweep plan of format {FORMAT_VERSION}")
    if not isinstance(header.get("list_id"), str):
        handle.close()
        raise PlanFileError(f"{source}:1: the header names no list_id")

    def entries() -> Iterator[PlanEntry]:
        with handle:
            for number, line in enumerate(handle, 2):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    action = row["action"]
                    before = row["before"]
                    after = row["after"]
                    if action not in ("update", "remove") or not isinstance(before, dict):
                        raise ValueError
                    if (action == "update") != isinstance(after, dict):
                        raise ValueError
                    yield PlanEntry(str(row["contact_id"]), before, after, row.get("reason"))
                except (ValueError, KeyError, TypeError):
                    raise PlanFileError(f"{source}:{number}: not a plan entry") from None

    return header, entries()
