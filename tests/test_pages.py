"""Tests mirroring ``cxsweep/runs/pages.py``: page counts, next-page cursors and the
re-read pass that judges planned contacts fresh or stale."""

from __future__ import annotations

import uuid

import redis

from cxsweep.platforms.base import Page
from cxsweep.platforms.factory import make_backend
from cxsweep.runs.model import PlanEntry
from cxsweep.runs.pages import following_cursor, looping_cursor, page_count, recheck_states
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
