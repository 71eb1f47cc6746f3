"""Tests mirroring ``cxsweep/runs/plan.py``: judging a page's contacts against a real
``Sanitizer``, and the whole plan against the purge guard, on a real Redis."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import redis

from cxsweep.phone.numbers import Directive, Sanitizer
from cxsweep.platforms.base import Backend
from cxsweep.platforms.factory import make_backend
from cxsweep.runs import keys
from cxsweep.runs.plan import Judgement, judge_plan, plan_page, purge_limit, unique_contacts
from cxsweep.runs.store import RunStore
from cxsweep.settings import get_settings


@pytest.fixture
def backend(redis_client: redis.Redis) -> Backend:
    return make_backend(get_settings(), redis_client)


def new_store(client: redis.Redis, *, dry_run: bool = False) -> RunStore:
    store = RunStore(client, f"test-plan-{uuid.uuid4().hex[:10]}")
    store.create("list-plan", dry_run=dry_run, options={})
    return store


def test_plan_page_keeps_rewrites_and_removes(backend: Backend) -> None:
    contacts = [
        {"id": "keep", "phone": "+16502530000"},
        {"id": "rewrite", "phone": "(650) 253-0001"},
        {"id": "junk", "phone": "not a number"},
        {"id": "empty", "phone": ""},
    ]
    plan = plan_page(contacts, Sanitizer(Directive()), backend)
    assert [e.contact_id for e in plan.updates] == ["rewrite"]
    assert plan.updates[0].after == {"phone": "+16502530001"}
    assert plan.updates[0].before == {"phone": "(650) 253-0001"}
    assert {e.contact_id: e.reason for e in plan.removes} == {
        "junk": "unparseable",
        "empty": "missing",
    }
    assert [c["id"] for c in plan.archive] == ["rewrite", "junk", "empty"]
    counts = plan.counts
    assert counts[keys.FETCHED] == 4 and counts[keys.UNCHANGED] == 1
    assert counts[keys.TO_UPDATE] == 1 and counts[keys.TO_REMOVE] == 2
    assert counts[keys.PHONE_VALUES] == 3 and counts[keys.VALUES_DESTROYED] == 1


def test_plan_page_counts_every_phone_field_a_backend_names(backend: Backend) -> None:
    """Two phone fields: a bad secondary number is blanked (destroyed, not removed), a
    contact is removed only when no field holds a good number, and the guard's counts
    weigh every value."""

    class TwoFields:
        phone_fields = ("phone", "mobile")
        update_needs_record = False
        contact_id = staticmethod(backend.contact_id)

    contacts = [
        {"id": "a", "phone": "+16502530000", "mobile": "junk"},
        {"id": "b", "phone": "", "mobile": "(650) 253-0001"},
        {"id": "c", "phone": None},
        {"id": "d", "phone": "x", "mobile": "y"},
    ]
    plan = plan_page(contacts, Sanitizer(Directive()), TwoFields())  # type: ignore[arg-type]
    assert {e.contact_id: e.after for e in plan.updates} == {
        "a": {"mobile": ""},
        "b": {"mobile": "+16502530001"},
    }
    assert plan.updates[1].before == {"phone": "", "mobile": "(650) 253-0001"}
    assert {e.contact_id: e.reason for e in plan.removes} == {"c": "missing", "d": "unparseable"}
    assert dict(plan.counts) == {
        keys.PHONE_VALUES: 5,
        keys.VALUES_DESTROYED: 3,
        "blanked": 1,
        keys.TO_REMOVE: 2,
        keys.TO_UPDATE: 2,
        keys.REASON_PREFIX + "unparseable": 2,
        keys.REASON_PREFIX + "missing": 1,
        keys.REGION_PREFIX + "US": 2,
        keys.TYPE_PREFIX + "FIXED_LINE_OR_MOBILE": 2,
        keys.FETCHED: 4,
        keys.LATENCY_N: 4,
        keys.LATENCY_US_SUM: plan.counts[keys.LATENCY_US_SUM],
    }
    assert plan.counts[keys.LATENCY_US_SUM] > 0


def test_plan_page_numbers_kept_contacts_for_keep_first(backend: Backend) -> None:
    contacts = [{"id": "a", "phone": "+16502530000"}, {"id": "b", "phone": "650 253 0000"}]
    plan = plan_page(contacts, Sanitizer(Directive()), backend, first_position=50)
    assert [(e164, pos) for e164, pos, _ in plan.numbers] == [
        ("+16502530000", 50),
        ("+16502530000", 51),
    ]


def test_unique_contacts_drops_ids_another_page_claimed(
    redis_client: redis.Redis, backend: Backend
) -> None:
    store = new_store(redis_client)
    first = [{"id": "x"}, {"id": "y"}]
    assert unique_contacts(store, 0, first, backend) == (first, 0)
    kept, dropped = unique_contacts(store, 1, [{"id": "y"}, {"id": "z"}, {"id": "z"}], backend)
    assert kept == [{"id": "z"}] and dropped == 2
    # A redelivered page finds its own ids.
    assert unique_contacts(store, 0, first, backend) == (first, 0)


def commit_counts(store: RunStore, fetched: int, removed: int) -> None:
    counts = Counter({keys.FETCHED: fetched, keys.TO_REMOVE: removed})
    counts[keys.PHONE_VALUES] = fetched
    counts[keys.VALUES_DESTROYED] = removed
    store.commit_page(0, [], [], counts)
    store.set_meta(pages_total=1)


def test_judge_plan_purge_guard_halts_a_run(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    commit_counts(store, fetched=10, removed=5)
    judged = judge_plan(store, [], dry_run=False, max_purge_ratio=0.2)
    assert judged.status == "halted"
    assert "5 of 10 contacts" in judged.message and "--allow-purge-ratio 0.51" in judged.message
    assert judge_plan(store, [], dry_run=False, max_purge_ratio=0.6).status == "write"


def test_judge_plan_dry_run_completes_with_the_guard_noted(redis_client: redis.Redis) -> None:
    store = new_store(redis_client, dry_run=True)
    commit_counts(store, fetched=10, removed=5)
    judged = judge_plan(store, [], dry_run=True, max_purge_ratio=0.2)
    assert judged.status == "completed"
    assert judged.message.startswith("dry run: nothing was written; the plan would remove")


def test_judge_plan_fails_an_incomplete_plan(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    unread = judge_plan(store, [], dry_run=False, max_purge_ratio=1)
    assert unread.status == "failed" and "last page was never read" in unread.message
    store.commit_page(0, [], [], {keys.FETCHED: 1})
    store.set_meta(pages_total=3)
    judged = judge_plan(store, [], dry_run=False, max_purge_ratio=1)
    assert judged.status == "failed"
    assert "2 of 3 pages were never sanitized (1, 2)" in judged.message
    header = [{"ok": True}, {"ok": False, "error": "read 500"}]
    assert judge_plan(store, header, dry_run=False, max_purge_ratio=1) == Judgement(
        "failed", "read 500"
    )


def test_purge_limit_prefers_the_operators_ratio() -> None:
    policy = {"l": Directive(max_purge_ratio=0.3)}
    assert purge_limit({}, "l", policy.__getitem__) == 0.3
    assert purge_limit({"allow_purge_ratio": "0.9"}, "l", policy.__getitem__) == 0.9
