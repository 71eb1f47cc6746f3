"""A run's plan as a file an operator can review, keep, and apply later.

JSON lines: a header line, one line per intended change, and a closing line::

    {"cxsweep_plan": 2, "run_id": ..., "list_id": ..., "backend": ..., "created_at": ...}
    {"contact_id": "c-1", "action": "update", "phone_before": "(650) 253-0000",
     "phone_after": "+16502530000", "reason": null, "before": {...}, "after": {...}}
    {"contact_id": "c-2", "action": "remove", "phone_before": "n/a", "phone_after": null,
     "reason": "unparseable", "before": {...}, "after": null}
    {"cxsweep_plan_end": 2, "entries": 2, "sha256": "..."}

The closing line holds the number of entries and the SHA-256 of every byte before it
(header included: a header edited to name another list is an altered plan). A plan cut
short, padded or edited after it was written is refused whole: applying the half of a
plan that survived a copy would be a change nobody reviewed.

Contacts left as they are ("keep") are not listed: applying them would do nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

from cxsweep.errors import CxsweepError
from cxsweep.runs.audit import iso, now
from cxsweep.runs.store import PlanEntry, RunStore

FORMAT_VERSION = 2
END_KEY = "cxsweep_plan_end"


class PlanFileError(CxsweepError):
    """The plan file is not one cxsweep wrote (or was edited into a wrong shape)."""


def _primary(fields: dict[str, Any] | None) -> Any:
    return next(iter(fields.values()), None) if fields else None


def write_plan(store: RunStore, out: IO[str], backend: str) -> int:
    digest = hashlib.sha256()

    def emit(row: dict[str, Any]) -> None:
        line = json.dumps(row) + "\n"
        digest.update(line.encode("utf-8"))
        out.write(line)

    meta = store.meta()
    header = {
        "cxsweep_plan": FORMAT_VERSION,
        "run_id": store.run_id,
        "list_id": meta.get("list_id"),
        "backend": backend,
        "created_at": iso(now()),
    }
    emit(header)
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
            emit(line)
            written += 1
    end = {END_KEY: FORMAT_VERSION, "entries": written, "sha256": digest.hexdigest()}
    out.write(json.dumps(end) + "\n")
    return written


def _entry(row: Any) -> PlanEntry:
    action, before, after = row["action"], row["before"], row["after"]
    if action not in ("update", "remove") or not isinstance(before, dict):
        raise ValueError
    if (action == "update") != isinstance(after, dict):
        raise ValueError
    return PlanEntry(str(row["contact_id"]), before, after, row.get("reason"))


def _lines(source: Path) -> Generator[tuple[int, bytes, Any], None, None]:
    """(line number, raw bytes, decoded JSON) of every line, the closing one included."""
    try:
        handle = source.open("rb")
    except OSError as exc:
        raise PlanFileError(f"cannot read plan {source}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise PlanFileError(
                    f"{source}:{number}: not a cxsweep plan (not UTF-8 text)"
                ) from None
            except ValueError:
                raise PlanFileError(
                    f"{source}:{number}: not a JSON line (a plan cut short or edited?)"
                ) from None
            yield number, raw, row


def read_plan(path: str | Path) -> tuple[dict[str, Any], Iterator[PlanEntry]]:
    """The header, and the entries (read lazily, validated line by line).

    The entries' iterator checks the closing line's count and digest when it reaches
    it, and raises ``PlanFileError`` then: consume it whole (``verify_plan``) before
    acting on any entry."""
    source = Path(path)
    lines = _lines(source)
    try:
        raw_header, header = _header(source, next(lines, None))
    except PlanFileError:
        lines.close()
        raise

    def entries() -> Iterator[PlanEntry]:
        digest = hashlib.sha256(raw_header)
        count = 0
        for number, raw, row in lines:
            if isinstance(row, dict) and END_KEY in row:
                _check_end(source, number, row, count, digest.hexdigest(), lines)
                return
            try:
                entry = _entry(row)
            except (ValueError, KeyError, TypeError):
                raise PlanFileError(f"{source}:{number}: not a plan entry") from None
            digest.update(raw)
            count += 1
            yield entry
        raise PlanFileError(
            f"{source}: incomplete plan: it ends after {count} entries without its closing"
            " line (cut short?); nothing applied"
        )

    return header, entries()


def _header(source: Path, first: tuple[int, bytes, Any] | None) -> tuple[bytes, dict[str, Any]]:
    if first is None:
        raise PlanFileError(f"{source}: empty file, not a cxsweep plan")
    _, raw, header = first
    if not isinstance(header, dict) or "cxsweep_plan" not in header:
        raise PlanFileError(f"{source}:1: not a cxsweep plan (no plan header)")
    if header.get("cxsweep_plan") != FORMAT_VERSION:
        raise PlanFileError(
            f"{source}:1: a plan of format {header.get('cxsweep_plan')!r}, not"
            f" {FORMAT_VERSION} (it carries no digest): write it again with --plan-out"
        )
    if not isinstance(header.get("list_id"), str) or not header["list_id"]:
        raise PlanFileError(f"{source}:1: the header names no list_id")
    return raw, header


def _check_end(
    source: Path,
    number: int,
    end: dict[str, Any],
    count: int,
    digest: str,
    rest: Iterator[tuple[int, bytes, Any]],
) -> None:
    if next(rest, None) is not None:
        raise PlanFileError(f"{source}:{number + 1}: lines after the plan's closing line")
    if end.get("entries") != count:
        raise PlanFileError(
            f"{source}: incomplete plan: {count} entries where its closing line counts"
            f" {end.get('entries')!r}; nothing applied"
        )
    if end.get("sha256") != digest:
        raise PlanFileError(
            f"{source}: the plan was altered after it was written (its SHA-256 does not"
            " match its closing line); nothing applied"
        )


def verify_plan(path: str | Path) -> tuple[dict[str, Any], int]:
    """Read the whole plan and check it: its header and its number of entries."""
    header, entries = read_plan(path)
    return header, sum(1 for _ in entries)
