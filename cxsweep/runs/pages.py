"""Reading a list page after page: the cursors of the next page, and the re-read passes
that judge a planned contact fresh or stale before anything is written.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cxsweep.platforms.base import Backend, Page
from cxsweep.runs.plan import judge_planned
from cxsweep.runs.store import RunStore

# Pages one read task reads before handing the rest to a fresh task (so no task runs
# for minutes and a crash re-reads little), and how long at most.
PAGES_PER_TASK = 10
SECONDS_PER_TASK = 2.0


def task_reads_another(pages_read: int, started: float) -> bool:
    """Whether a read task that has read ``pages_read`` pages since ``started``
    (``time.monotonic``) reads the next one too, or hands the rest to a fresh task."""
    return pages_read < PAGES_PER_TASK and time.monotonic() - started <= SECONDS_PER_TASK


def looping_cursor(page_no: int, earlier: int) -> str:
    return (
        f"the platform's nextPageUri after page {page_no} points back to page {earlier}:"
        " its paging loops, so the list cannot be read whole; nothing was written"
    )


def page_count(total: int, page_size: int) -> int:
    """Pages of an offset-paged list of ``total`` contacts served ``page_size`` a page
    (at least one: an empty list has its first page)."""
    return max(1, -(-total // page_size)) if page_size else 1


def recheck_states(
    store: RunStore, backend: Backend, contacts: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """The verify pass over one re-read page: each planned contact on it is ``fresh``
    (as the plan saw it) or ``stale`` (changed since), judged as ``apply`` judges a plan."""
    ids = [backend.contact_id(contact) for contact in contacts]
    planned = store.plan_index_among(ids)
    # Only the planned contacts are looked at (``plan_page_from_plan`` also counts every
    # contact for apply's record, which this pass does not keep). A contact shown twice
    # is stale if either showing is; one already holding what the plan writes is left
    # out (the write then finds it ``gone``), as before.
    states: dict[str, str] = {}
    for contact, contact_id in zip(contacts, ids, strict=True):
        entry = planned.get(contact_id)
        if entry is None or states.get(contact_id) == "stale":
            continue
        judged = judge_planned(contact, entry)
        if judged != "applied":
            states[contact_id] = judged
    return states


def following_cursor(
    backend: Backend, list_id: str, page_no: int, page: Page, page_size: int
) -> str | None:
    """The cursor of the page after ``page_no``: the platform's, or for offset paging with
    a total, built from the first page's size as ``fetch_page`` builds them (a platform
    may serve fewer records than asked)."""
    if not backend.parallel_pages or page.total is None:
        return page.next_cursor
    if not page.contacts or (page_no + 1) * page_size >= page.total:
        return None
    return backend.page_cursor(list_id, page_no + 1, page_size)


_readers: dict[int, ThreadPoolExecutor] = {}
_readers_lock = threading.Lock()


def _reader() -> ThreadPoolExecutor:
    """The process's threads for reads ahead (a forked child makes its own)."""
    pid = os.getpid()
    with _readers_lock:
        pool = _readers.get(pid)
        if pool is None:
            pool = _readers[pid] = ThreadPoolExecutor(32, thread_name_prefix="cxsweep-read-ahead")
        return pool


class PagesAhead:
    """Reads the next page of a list in a helper thread while the step works on this one.

    Pages follow opaque cursors one after another, so a pass used to wait for each page's
    answer (the platform's latency, and its time to build 500 records) and then judge it,
    idle in turn. With the next cursor known as soon as a page is parsed, its read starts
    at once. One read at most is in flight; a step asks for one only when it will take
    it (so no request is wasted), and ``close`` waits for one it did not take, so that
    every request is counted by the step that made it."""

    def __init__(self, read: Callable[[str | None], Page], *, enabled: bool = True) -> None:
        self._read = read
        self._enabled = enabled
        self._pending: tuple[str | None, Future[Page]] | None = None

    def __enter__(self) -> PagesAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, cursor: str | None) -> None:
        """Begin reading the page at ``cursor`` (when enabled and none is in flight)."""
        if self._enabled and self._pending is None:
            self._pending = (cursor, _reader().submit(self._read, cursor))

    def take(self, cursor: str | None) -> Page:
        """The page at ``cursor``: the one read ahead, or read now. A failed read ahead
        raises here, as the read would have."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending[0] == cursor:
                return pending[1].result()
            _settle(pending[1])
        return self._read(cursor)

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            _settle(pending[1])


def _settle(future: Future[Page]) -> None:
    """Wait for a read no one will take; its failure is no one's either."""
    if not future.cancel():
        future.exception()
