"""The simulator's storage: v2 contact lists with their cursors, CXone calling lists,
seeded calling-list records and the statistics counters."""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from devtools import seed as seed_data
from devtools.simulator.config import CXONE_PHONE_COLUMNS, KINDS


class ContactList:
    """Contacts in insertion order, addressable by id and by position.

    ``order`` is append-only with ``None`` where a contact was removed, so a cursor (a
    position) stays meaningful across deletions and re-creations, and a page costs
    O(page) plus the removed slots it skips.
    """

    __slots__ = ("contacts", "generation", "list_id", "name", "order", "position", "rank")

    def __init__(self, list_id: str, name: str, contacts: Iterable[dict]) -> None:
        self.list_id = list_id
        self.name = name
        # Set when installed: which version of the list a cursor belongs to, and where the
        # list sits in the list of lists.
        self.generation = 0
        self.rank = 0
        self.contacts: dict[str, dict[str, Any]] = {}
        self.position: dict[str, int] = {}
        self.order: list[str | None] = []
        for contact in contacts:
            cid = contact.get("id") if isinstance(contact, dict) else None
            if not isinstance(cid, str) or not cid:
                raise ValueError("every contact needs a non-empty string 'id'")
            if cid in self.contacts:
                raise ValueError(f"duplicate contact id {cid!r}")
            self.append(dict(contact))

    def append(self, contact: dict[str, Any]) -> None:
        cid = contact["id"]
        self.contacts[cid] = contact
        self.position[cid] = len(self.order)
        self.order.append(cid)

    def remove(self, cid: str) -> bool:
        if cid not in self.contacts:
            return False
        del self.contacts[cid]
        self.order[self.position.pop(cid)] = None
        return True

    def page(self, start: int, size: int) -> tuple[list[dict[str, Any]], int | None]:
        order, contacts = self.order, self.contacts
        out: list[dict[str, Any]] = []
        i, end = start, len(order)
        while i < end and len(out) < size:
            cid = order[i]
            if cid is not None:
                out.append(dict(contacts[cid]))
            i += 1
        while i < end and order[i] is None:
            i += 1
        return out, (i if i < end else None)


def encode_cursor(payload: Mapping[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(value, dict):
        raise ValueError("invalid cursor")
    return value


class CallingList:
    """A CXone calling list: records keyed by the list's external id column."""

    __slots__ = (
        "expiration",
        "external_id_column",
        "list_id",
        "name",
        "phone_columns",
        "records",
        "skill_id",
        "status",
    )

    def __init__(
        self,
        list_id: str,
        name: str,
        records: Iterable[Mapping[str, Any]],
        external_id_column: str = "ExternalId",
        phone_columns: Iterable[str] = CXONE_PHONE_COLUMNS,
        *,
        status: str = "Active",
        skill_id: int = 4001,
        expiration: str | None = None,
    ) -> None:
        self.list_id = list_id
        self.name = name
        self.status = status
        self.skill_id = skill_id
        self.expiration = expiration
        self.external_id_column = external_id_column
        self.phone_columns = tuple(phone_columns)
        self.records: dict[str, dict[str, Any]] = {}
        for record in records:
            key = record.get(external_id_column) if isinstance(record, Mapping) else None
            if not isinstance(key, str) or not key:
                raise ValueError(f"every record needs a non-empty {external_id_column!r}")
            if key in self.records:
                raise ValueError(f"duplicate external id {key!r}")
            self.records[key] = dict(record)

    def summary(self) -> dict[str, Any]:
        return {
            "listId": int(self.list_id) if self.list_id.isdigit() else self.list_id,
            "listName": self.name,
            "status": self.status,
            "totalRecords": len(self.records),
            "validRecords": len(self.records),
            "invalidRecords": 0,
            "finalizedRecords": 0,
            "skills": [{"skillId": self.skill_id}],
        }


def messy_call_records(
    list_id: str, count: int, seed: int = 0, phone_columns: Sequence[str] = CXONE_PHONE_COLUMNS
) -> list[dict[str, Any]]:
    """``count`` calling-list records with several phone columns, from the seed helpers.

    The first column is always filled, the others often; each number is drawn from the
    seeded messy mix, so many records hold one good number beside a bad one.
    """
    columns = tuple(phone_columns)
    base = seed_data.messy_contacts(f"cx{list_id}", count * len(columns), seed)
    rng = random.Random(f"{list_id}:{seed}")
    records: list[dict[str, Any]] = []
    for i in range(count):
        group = base[i * len(columns) : (i + 1) * len(columns)]
        person = group[0]
        record: dict[str, Any] = {"ExternalId": f"{list_id}-{i:06d}"}
        for position, (column, contact) in enumerate(zip(columns, group, strict=True)):
            present = position == 0 or rng.random() < (0.6 if position == 1 else 0.35)
            record[column] = (contact["phone"] or "") if present else ""
        record.update(
            FirstName=person["firstName"],
            LastName=person["lastName"],
            Email=person["email"],
            AccountNumber=person["accountNumber"],
            Notes=person["notes"],
        )
        records.append(record)
    return records


def new_stats() -> dict[str, Any]:
    return {
        "requests": dict.fromkeys(KINDS, 0),
        "token_grants": 0,
        "statuses": {},
        "patched": {},
        "max_patch_batch": 0,
        "deleted": 0,
        "delete_404": 0,
        "faults_fired": 0,
        "in_flight_max": 0,
        # CXone
        "password_grants": 0,
        "access_key_grants": 0,
        "refresh_grants": 0,
        "removed_prospects": 0,
        "remove_failed": 0,
        "uploaded": {},
        "upload_failed": 0,
        "jobs_submitted": 0,
        "dnc_added": 0,
        "dnc_rewritten": 0,
    }
