"""A run's vocabulary, shared by the store and its parts: statuses, kinds, how long its
keys live, and ``PlanEntry``, one intended write."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from cxsweep import jsoncodec

# Bulky keys (pages, the plan) expire on their own; a week covers any review of a dry run.
DATA_TTL = 7 * 24 * 3600
# What a run changed must outlive the run long enough to be restored.
ARCHIVE_TTL = 30 * 24 * 3600
# Why a contact counted as removed is a failure after all.
STILL_PRESENT = "still present after DELETE"

ACTIVE = ("reading", "writing")
FINAL = ("completed", "halted", "failed", "cancelled")


# What a run does, stored in its metadata when it is created: the progress, the summary,
# the report and `cxsweep status` word each kind for what it does.
KINDS = ("sweep", "dry_run", "apply", "restore")


def run_kind(dry_run: bool, options: Mapping[str, Any]) -> str:
    if options.get("restore_of"):
        return "restore"
    if options.get("apply"):
        return "apply"
    return "dry_run" if dry_run else "sweep"


def kind_of(meta: Mapping[str, str]) -> str:
    """The kind stored in a run's metadata (derived for runs stored before it was)."""
    kind = meta.get("kind", "")
    if kind in KINDS:
        return kind
    return run_kind(meta.get("dry_run") == "1", json.loads(meta.get("options") or "{}"))


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


class ChunkTally(TypedDict):
    """What a write chunk's requests add to the run's counters (``counts``, by counter
    name) and latency histogram (``latency``, by ``{kind}:{bucket}``), kept with its done
    marker until the run is recorded."""

    counts: dict[str, int]
    latency: dict[str, int]


@dataclass(frozen=True)
class PlanEntry:
    """One intended write: the phone fields as read, and the new values of those that
    change (an update; "" blanks a bad secondary number) or None (a removal)."""

    contact_id: str
    before: dict[str, str | None]
    after: dict[str, str] | None
    reason: str | None
    #: the whole record, only for backends that rewrite whole records
    record: dict[str, Any] | None = None

    def to_json(self) -> str:
        row: list[Any] = [self.contact_id, self.before, self.after, self.reason]
        if self.record is not None:
            row.append(self.record)
        return jsoncodec.dumps_text(row)

    @classmethod
    def from_json(cls, raw: bytes | str) -> PlanEntry:
        return cls(*jsoncodec.loads(raw))

    @classmethod
    def many_from_json(cls, raws: Sequence[bytes | str]) -> list[PlanEntry]:
        """Rows as Redis returns them, decoded together (``jsoncodec.loads_rows``): a
        chunk's slice is a thousand rows."""
        return [cls(*row) for row in jsoncodec.loads_rows(raws)]
