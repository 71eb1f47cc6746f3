"""Restoring a run: what it removed is re-created and the numbers it changed are written
back, from the archive it kept, through the same guarded writes as the run itself.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from cxsweep.platforms.base import Backend, Change
from cxsweep.runs.outcomes import RestoreResult
from cxsweep.runs.store import RunStore
from cxsweep.runs.writes import guarded

# Contacts a restore deletes and re-creates (numbers PATCH would refuse) per group.
RESTORE_IN_PLACE_GROUP = 20

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def restore_page(
    restore: RunStore,
    source: RunStore,
    backend: Backend,
    list_id: str,
    page_no: int,
    *,
    threshold: int,
) -> RestoreResult:
    """Put one archive page of ``source`` back: re-create what it removed, write back the
    numbers it changed. Contacts already restored (a redelivered task) are skipped."""
    records = source.archive_page(page_no)
    ids = [backend.contact_id(r) for r in records]
    done = restore.restored_among(ids)
    removed = source.removed_ids_among(ids)
    recreate = [
        r for r, cid in zip(records, ids, strict=True) if cid in removed and cid not in done
    ]
    # Every other archived record was to be updated. Writing back the values it had is
    # right whether or not its update went through, so no record of which did is needed.
    revert = [r for r, cid in zip(records, ids, strict=True) if cid not in removed | done]
    fields = backend.phone_fields
    # A platform that rewrites whole records takes any value back; one that PATCHes only
    # E.164 numbers (v2) gets a contact whose old number was not E.164 re-created as it was.
    patchable = [
        r
        for r in revert
        if backend.update_needs_record
        or all(not r.get(f) or E164.match(str(r.get(f))) for f in fields)
    ]
    recreate_in_place = [r for r in revert if r not in patchable]
    writer = f"restore:{page_no}"
    try:
        _restore_writes(
            restore, backend, list_id, writer, threshold, patchable, recreate, recreate_in_place
        )
    finally:
        restore.writer_done(writer)
    restore.mark_chunk_done("restore", page_no)
    recreated = len(recreate) + len(recreate_in_place)
    return {"ok": True, "page": page_no, "recreated": recreated, "reverted": len(patchable)}


def _restore_writes(
    restore: RunStore,
    backend: Backend,
    list_id: str,
    writer: str,
    threshold: int,
    patchable: list[dict[str, Any]],
    recreate: list[dict[str, Any]],
    recreate_in_place: list[dict[str, Any]],
) -> None:
    fields, size = backend.phone_fields, backend.update_batch_size
    for start in range(0, len(patchable), size):
        batch = patchable[start : start + size]
        changes = [
            Change(backend.contact_id(r), {f: str(r.get(f) or "") for f in fields}, record=r)
            for r in batch
        ]
        outcome = guarded(
            restore, list_id, writer, threshold, partial(backend.update_contacts, list_id, changes)
        )
        restore.record_failures(outcome.failed)
        restore.record_restored(outcome.done, "reverted")
    for start in range(0, len(recreate), size):
        batch = recreate[start : start + size]
        created = guarded(
            restore, list_id, writer, threshold, partial(backend.create_contacts, list_id, batch)
        )
        restore.record_failures(created.failed)
        restore.record_restored(created.done + created.missing, "recreated")
    # Deleted and re-created a group at a time: a contact is off the list for a few
    # requests only, and the restore's progress moves with every group (on v2 each
    # deletion is a request of its own).
    group = min(size, RESTORE_IN_PLACE_GROUP)
    for start in range(0, len(recreate_in_place), group):
        batch = recreate_in_place[start : start + group]
        ids_in_place = [backend.contact_id(r) for r in batch]
        for first in range(0, len(ids_in_place), backend.remove_batch_size):
            batch_ids = ids_in_place[first : first + backend.remove_batch_size]
            send = partial(backend.remove_contacts, list_id, batch_ids)
            guarded(restore, list_id, writer, threshold, send)
        created = guarded(
            restore, list_id, writer, threshold, partial(backend.create_contacts, list_id, batch)
        )
        restore.record_failures(created.failed)
        # The run changed these contacts' numbers (it did not remove them): reverted.
        restore.record_restored(created.done + created.missing, "reverted")
