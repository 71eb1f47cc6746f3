"""Tests mirroring ``cxsweep/runs/pages.py``: page counts, next-page cursors and the
re-read pass that judges planned contacts fresh or stale."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from cxsweep.errors import RetryableApiError
from cxsweep.platforms.base import Page
from cxsweep.platforms.factory import make_backend
from cxsweep.runs.model import PlanEntry
from cxsweep.runs.pages import (
    PAGES_PER_TASK,
    SECONDS_PER_TASK,
    PagesAhead,
    following_cursor,
    looping_cursor,
    page_count,
    recheck_states,
    task_reads_another,
)
from cxsweep.runs.store import RunStore
from cxsweep.settings import get_settings


def test_page_count_rounds_up_and_never_reaches_zero() -> None:
    assert page_count(250, 100) == 3
    assert page_count(200, 100) == 2
    assert page_count(1, 100) == 1
    assert page_count(10, 0) == 1
    assert page_count(0, 100) == 1


def test_looping_cursor_names_both_pages() -> None:
    message = looping_cursor(7, 2)
    assert "after page 7 points back to page 2" in message and "nothing was written" in message


def test_following_cursor_on_v2_is_the_platforms(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    page = Page([{"id": "a"}], "http://sim/next?page=2", total=500)
    assert following_cursor(backend, "l", 0, page, 100) == "http://sim/next?page=2"
    assert following_cursor(backend, "l", 4, Page([], None, total=500), 100) is None


def test_recheck_states_judges_planned_contacts_fresh_or_stale(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = RunStore(redis_client, f"test-pages-{uuid.uuid4().hex[:10]}")
    store.create("list-pages", dry_run=False, options={})
    updates = [
        PlanEntry("u1", {"phone": "(650) 253-0001"}, {"phone": "+16502530001"}, None),
        PlanEntry("u2", {"phone": "(650) 253-0002"}, {"phone": "+16502530002"}, None),
    ]
    removes = [PlanEntry("r1", {"phone": "junk"}, None, "unparseable")]
    store.commit_page(0, updates, removes, {})
    store.index_plan()
    reread = [
        {"id": "u1", "phone": "(650) 253-0001"},  # as planned
        {"id": "u2", "phone": "+442070313000"},  # someone changed it since
        {"id": "r1", "phone": "junk"},
        {"id": "k1", "phone": "+16502530009"},  # never planned
    ]
    assert recheck_states(store, backend, reread) == {"u1": "fresh", "u2": "stale", "r1": "fresh"}


def test_recheck_states_a_contact_shown_twice_is_stale_if_either_is(
    redis_client: redis.Redis,
) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = RunStore(redis_client, f"test-pages-{uuid.uuid4().hex[:10]}")
    store.create("list-pages", dry_run=False, options={})
    updates = [
        PlanEntry(f"u{i}", {"phone": f"(650) 253-000{i}"}, {"phone": f"+1650253000{i}"}, None)
        for i in range(1, 4)
    ]
    store.commit_page(0, updates, [], {})
    store.index_plan()
    reread = [
        {"id": "u1", "phone": "+442070313000"},  # changed, then shown as planned
        {"id": "u1", "phone": "(650) 253-0001"},
        {"id": "u2", "phone": "(650) 253-0002"},  # as planned, then changed
        {"id": "u2", "phone": "+442070313000"},
        {"id": "u3", "phone": "(650) 253-0003"},  # as planned twice
        {"id": "u3", "phone": "(650) 253-0003"},
    ]
    expected = {"u1": "stale", "u2": "stale", "u3": "fresh"}
    assert recheck_states(store, backend, reread) == expected


class _Pages:
    """A list of ``count`` pages behind cursors "p0".."pN", read by any thread; each read
    is noted with the thread that made it, and held until ``release`` when gated."""

    def __init__(self, count: int, *, fail_at: str | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.reads: list[tuple[str | None, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def read(self, cursor: str | None) -> Page:
        number = int((cursor or "p0")[1:])
        self.reads.append((cursor, threading.current_thread().name))
        self.gate.wait(10)
        if self.fail_at is not None and cursor == self.fail_at:
            raise RetryableApiError(f"GET {cursor}: server error 503", status=503)
        following = f"p{number + 1}" if number + 1 < self.count else None
        return Page([{"id": f"c{number}"}], following)


def test_pages_ahead_reads_each_page_once_the_next_while_this_one_is_worked_on() -> None:
    source = _Pages(4)
    seen: list[str] = []
    with PagesAhead(source.read) as ahead:
        cursor: str | None = None
        while True:
            page = ahead.take(cursor)
            if page.next_cursor:
                ahead.start(page.next_cursor)
                # The next page is asked for before this one is worked on.
                assert wait_for(lambda: len(source.reads) == len(seen) + 2)
            seen.append(page.contacts[0]["id"])
            if not page.next_cursor:
                break
            cursor = page.next_cursor
    assert seen == ["c0", "c1", "c2", "c3"]
    assert [cursor for cursor, _ in source.reads] == [None, "p1", "p2", "p3"]
    assert all(thread.startswith("cxsweep-read-ahead") for _, thread in source.reads[1:])


def test_pages_ahead_a_read_not_taken_is_waited_for_and_a_failed_one_raises_at_take() -> None:
    source = _Pages(3, fail_at="p1")
    with PagesAhead(source.read) as ahead:
        ahead.start("p1")
        with pytest.raises(RetryableApiError, match="503"):
            ahead.take("p1")  # raised where the read would have raised
    source = _Pages(3)
    source.gate.clear()
    ahead = PagesAhead(source.read)
    ahead.start("p2")
    assert wait_for(lambda: len(source.reads) == 1)
    closing = threading.Thread(target=ahead.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive()  # close waits for the read in flight (its request is counted)
    source.gate.set()
    closing.join(10)
    assert not closing.is_alive()
    # A read ahead of another cursor is settled (cancelled if it has not begun) and the
    # asked one read: never the wrong page.
    source = _Pages(3)
    with PagesAhead(source.read) as ahead:
        ahead.start("p1")
        assert ahead.take("p2").contacts == [{"id": "c2"}]
    assert [cursor for cursor, _ in source.reads] in (["p1", "p2"], ["p2"])


def test_pages_ahead_off_reads_in_the_callers_thread() -> None:
    source = _Pages(2)
    with PagesAhead(source.read, enabled=False) as ahead:
        ahead.start("p1")
        assert source.reads == []
        assert ahead.take("p1").contacts == [{"id": "c1"}]
    assert source.reads == [("p1", threading.current_thread().name)]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_a_read_task_reads_on_within_its_page_and_time_budget() -> None:
    now = time.monotonic()
    assert task_reads_another(1, now)
    assert not task_reads_another(PAGES_PER_TASK, now)
    assert not task_reads_another(1, now - SECONDS_PER_TASK - 0.5)
