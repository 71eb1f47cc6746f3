"""What the pipeline needs from a contact-list platform, whichever it is.

The pipeline and the tasks know only this interface. ``CXSWEEP_BACKEND`` picks one:
``v2`` (the campaign contract, docs/cxone-api.md §1) or ``cxone`` (NICE CXone Admin
API, §2), built by ``cxsweep.platforms.factory.make_backend``. Every method makes its
platform calls once and raises the typed errors of ``cxsweep.errors``; retrying is the
caller's business.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Page:
    """One page of a list: raw records, and the cursor of the next page (None: last).

    ``warnings`` are what the platform showed that the operator must hear of (a CXone
    skill that dials what is uploaded to it, say): the run keeps and reports them."""

    contacts: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Change:
    """New values for some phone fields of one contact; ``record`` is the contact as read
    (a platform that can only overwrite whole records needs it)."""

    contact_id: str
    phones: Mapping[str, str]
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class WriteOutcome:
    """Per-contact result of a batch: done, already gone (removals), or failed with why."""

    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: what else the batch met, added to the run's counters (``keys`` names)
    counts: dict[str, int] = field(default_factory=dict)


INVALID_ID = "invalid contact id"


def contact_id_problem(contact_id: Any) -> str | None:
    """Why the platform's ``contact_id`` must never be written to, or None when it may.

    An id is put in a URL (v2 DELETE) or a write's body: an empty one or a dot segment
    ("." "..") turns ``DELETE .../contacts/{id}`` into a DELETE of a collection once
    the URL is normalised, and "/", "\\" or a control character steers it elsewhere.
    Such ids are reported as failures, never written.
    """
    if not isinstance(contact_id, str) or contact_id == "":
        return f"{INVALID_ID} (empty)"
    if contact_id in (".", ".."):
        return f"{INVALID_ID} (a dot segment: {contact_id!r})"
    if "/" in contact_id or "\\" in contact_id:
        return f"{INVALID_ID} (holds a slash)"
    if any(unicodedata.category(ch) == "Cc" for ch in contact_id):
        return f"{INVALID_ID} (holds a control character)"
    return None


def writable_ids(contact_ids: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``contact_ids`` split into those a write may address and the rest, with why."""
    ok: list[str] = []
    refused: dict[str, str] = {}
    for contact_id in contact_ids:
        problem = contact_id_problem(contact_id)
        if problem is None:
            ok.append(contact_id)
        else:
            refused[contact_id] = problem
    return ok, refused


class Backend(Protocol):
    name: str
    #: the contact's fields that hold phone numbers, sanitized one by one
    phone_fields: tuple[str, ...]
    update_batch_size: int
    remove_batch_size: int
    #: whether page n can be read without page n-1 (offset paging): reads may fan out
    parallel_pages: bool
    #: whether the next page is worth reading while this one is judged (a request over
    #: the network, not a local spool): ``runs.pages.PagesAhead``
    read_ahead: bool
    #: whether ``update_contacts`` needs each contact's whole record (re-upload platforms)
    update_needs_record: bool

    def check_credentials(self) -> None:
        """Obtain (or reuse) the shared token; raises ``CredentialsRefused``."""

    def iter_lists(self) -> Iterator[dict[str, Any]]:
        """Every list of the account: dicts with at least ``id`` and ``name``."""

    def read_page(self, list_id: str, cursor: str | None) -> Page:
        """The page at ``cursor`` (None: the first page)."""

    def page_cursor(self, list_id: str, page_no: int, page_size: int) -> str:
        """The cursor of page ``page_no``, for backends with ``parallel_pages``."""

    def contact_id(self, contact: Mapping[str, Any]) -> str:
        """The key the platform's writes address a contact by."""

    def update_contacts(self, list_id: str, changes: Sequence[Change]) -> WriteOutcome:
        """Apply at most ``update_batch_size`` changes."""

    def remove_contacts(self, list_id: str, contact_ids: Sequence[str]) -> WriteOutcome:
        """Remove at most ``remove_batch_size`` contacts (already gone is not a failure)."""

    def create_contacts(self, list_id: str, contacts: Sequence[Mapping[str, Any]]) -> WriteOutcome:
        """Re-create removed contacts as they were (restore); ids already present are
        reported as ``missing`` (nothing to do), refused ones as ``failed``."""
