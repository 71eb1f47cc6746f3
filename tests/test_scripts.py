"""Tests mirroring ``cxsweep/runs/scripts.py``: each Lua script through the store method
that runs it, on a real Redis."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from cxsweep.runs import keys
from cxsweep.runs.lock import ListLock
from cxsweep.runs.model import PlanEntry
from cxsweep.runs.store import RunStore


def new_store(client: redis.Redis) -> RunStore:
    store = RunStore(client, f"test-scripts-{uuid.uuid4().hex[:10]}")
    store.create(f"list-{store.run_id}", dry_run=False, options={})
    return store


def test_claim_ids_first_page_wins(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    assert store.claim_ids(0, ["a", "b"]) == set()
    assert store.claim_ids(1, ["b", "c"]) == {"b"}
    assert store.claim_ids(0, ["a", "b"]) == set()  # a redelivery finds its own


def test_note_cursor_detects_a_loop(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    assert store.note_cursor(1, "http://x/p2") is None
    assert store.note_cursor(1, "http://x/p2") is None  # the same page again
    assert store.note_cursor(3, "http://x/p2") == 1
    assert store.cursor(1) == "http://x/p2" and store.cursor(3) is None


def test_mark_done_counts_once_and_hand_off_checks_the_holder(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    store.mark_chunk_done("remove", 0)
    store.mark_chunk_done("remove", 0)
    assert store.chunk_done("remove", 0) and store.counts()[keys.CHUNKS_DONE] == 1
    assert store.claim("read", "t1")
    assert not store.hand_off("read", "t9", "t2")
    assert store.hand_off("read", "t1", "t2")
    assert store.claim("read", "t2") and not store.claim("read", "t1")


def test_write_permit_fails_a_run_without_its_lock(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    list_id = store.meta()["list_id"]
    why = store.permit_write(list_id, "w1")
    assert why.startswith("failed: lost the lock of list") and "nobody (it expired)" in why
    assert store.meta()["error"] in why


def test_claim_numbers_then_duplicates_are_removed(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    row = lambda cid: json.dumps([cid, keys.UNCHANGED, {"phone": "+16502530000"}])  # noqa: E731
    store.commit_page(1, [], [], {keys.UNCHANGED: 1}, numbers=[("+16502530000", 20, row("late"))])
    store.commit_page(0, [], [], {keys.UNCHANGED: 1}, numbers=[("+16502530000", 5, row("early"))])
    assert store.resolve_duplicates() == 1
    assert store.resolve_duplicates() == 0  # once per run
    assert store.duplicates_among(["early", "late"]) == {"late"}
    removal = store.plan_slice("remove", 0, 10)
    assert [(e.contact_id, e.reason) for e in removal] == [("late", "duplicate")]
    assert store.counts()[keys.UNCHANGED] == 1 and store.counts()[keys.TO_REMOVE] == 1


def test_mark_freshness_and_flag_still_present(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    entries = [PlanEntry(c, {"phone": "x"}, None, "unparseable") for c in ("a", "b")]
    store.commit_page(0, [], entries, {keys.TO_REMOVE: 2, keys.REASON_PREFIX + "unparseable": 2})
    store.index_plan()
    with pytest.raises(redis.ResponseError, match="not re-read"):
        store.claim_fresh(["a"])
    store.record_recheck_page("verify", 0, None, 100, {"a": "fresh"})
    store.set_verified()
    assert store.claim_fresh(["a", "b", "z"]) == ["fresh", "gone", "unplanned"]
    assert store.counts()[keys.TO_REMOVE] == 1 and store.counts()[keys.STALE] == 1
    lock = ListLock(redis_client, store.meta()["list_id"])
    assert lock.acquire(store.run_id)
    store.record_removed(["a"], [], "w", answered=True)
    assert store.confirm_page(0, None, 100, ["a", "q"]) == ["a"]
    assert store.counts()["still_present"] == 1 and "a" in store.failures()
    lock.release(store.run_id)


def test_claim_ids_in_slices_of_a_long_page(redis_client: redis.Redis) -> None:
    # The script reads and claims ids a slice of 1,000 at a time: ids past the first
    # slice, and an id repeated across slices of the same page, are still judged right.
    store = new_store(redis_client)
    first = [f"c{i}" for i in range(2500)]
    assert store.claim_ids(0, [*first, "c5", "c1999"]) == set()
    later = [f"c{i}" for i in range(2400, 3700)]
    assert store.claim_ids(1, later) == {f"c{i}" for i in range(2400, 2500)}
    assert store.claim_ids(0, first) == set()  # a redelivery of page 0 finds its own
    assert store.claim_ids(1, later) == {f"c{i}" for i in range(2400, 2500)}


def test_mark_freshness_batched_judges_each_contact_once(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    ids = [f"r{i}" for i in range(1200)]
    entries = [PlanEntry(c, {"phone": "x"}, None, "unparseable") for c in ids]
    upd = PlanEntry("u", {"phone": "1"}, {"phone": "+1"}, None)
    unparseable = keys.REASON_PREFIX + "unparseable"
    store.commit_page(
        0, [upd], entries, {keys.TO_UPDATE: 1, keys.TO_REMOVE: 1200, unparseable: 1200}
    )
    store.index_plan(batch=700)  # slices that do not divide the plan evenly
    # Named twice in one call, a contact is judged at its first mention (as two calls).
    states = {c: "fresh" for c in ids[:1000]}
    store.record_recheck_page("verify", 0, None, 100, {**states, "u": "stale"})
    store.set_verified()
    got = store.claim_fresh(["r1100", "r1100", "r5", "u", "nobody"])
    assert got == ["gone", "gone", "fresh", "stale", "unplanned"]
    counts = store.counts()
    assert counts[keys.STALE] == 2
    assert counts[keys.STALE_PREFIX + "gone"] == counts[keys.STALE_PREFIX + "stale"] == 1
    assert counts[keys.TO_REMOVE] == 1199 and counts[keys.TO_UPDATE] == 0
    assert counts[unparseable] == 1199
    assert sorted(store.stale_ids()) == ["r1100", "u"]
    assert store.claim_fresh(ids[1000:1101])[:2] == ["gone", "gone"]
    assert store.counts()[keys.STALE] == 102  # 100 more: r1100 counted once over both calls


def test_index_plan_lets_a_later_row_win(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    updates = [PlanEntry(f"k{i}", {"phone": "1"}, {"phone": "+1"}, None) for i in range(1300)]
    dup = PlanEntry("k7", {"phone": "1"}, None, "duplicate")
    store.commit_page(0, updates, [dup], {keys.TO_UPDATE: 1300, keys.TO_REMOVE: 1})
    store.index_plan()
    index = store.plan_index_among(["k7", "k1299", "nobody"])
    assert set(index) == {"k7", "k1299"}
    assert index["k7"].after is None and index["k7"].reason == "duplicate"
    assert index["k1299"].after == {}


def test_a_chunk_is_ready_once_the_verify_pass_judged_its_every_contact(
    redis_client: redis.Redis,
) -> None:
    store = new_store(redis_client)
    updates = [PlanEntry(f"u{i}", {"phone": "1"}, {"phone": "+1"}, None) for i in range(5)]
    removes = [PlanEntry(f"r{i}", {"phone": "x"}, None, "invalid") for i in range(3)]
    removes.append(PlanEntry("u4", {"phone": "1"}, None, "duplicate"))  # u4's row is this
    store.commit_page(0, updates, removes, {keys.TO_UPDATE: 5, keys.TO_REMOVE: 4})
    store.index_plan((2, 2))  # update chunks u0 u1 | u2 u3 | u4; removals r0 r1 | r2 u4
    assert store.plan_index_among(["u1"])["u1"] == PlanEntry("u1", {"phone": "1"}, {}, None)
    assert store.record_recheck_page("verify", 0, "next", 2, {"u0": "fresh"}) == []
    # Before the pass ends a write may claim judged contacts only.
    with pytest.raises(redis.ResponseError, match="not re-read"):
        store.claim_fresh(["u0", "u1"])
    with pytest.raises(redis.ResponseError, match="not re-read"):
        store.claim_fresh(["nobody"])
    ready = store.record_recheck_page("verify", 1, "next", 2, {"u1": "stale", "r0": "fresh"})
    assert ready == [("update", 0)]
    assert store.claim_fresh(["u0", "u1"]) == ["fresh", "stale"]
    # u4 became a removal: update chunk 2 holds no row, it waits for the pass's end.
    ready = store.record_recheck_page("verify", 2, None, 2, {"r1": "fresh", "u4": "fresh"})
    assert ready == [("remove", 0)]
    assert store.record_recheck_page("verify", 2, None, 2, {"r1": "fresh"}) == []  # again
    store.set_verified()
    assert store.claim_fresh(["r2", "u4"]) == ["gone", "fresh"]


def test_flag_still_present_names_each_contact_once(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    list_id = store.meta()["list_id"]
    lock = ListLock(redis_client, list_id)
    assert lock.acquire(store.run_id)
    removed = [f"d{i}" for i in range(1500)]
    store.record_removed(removed, [], "w", answered=True)
    page = [f"other{i}" for i in range(1200)] + ["d3", "d1400", "d3"]
    assert store.confirm_page(0, None, 100, page) == ["d3", "d1400"]
    assert store.counts()[keys.STILL_PRESENT] == 2
    assert set(store.failures()) == {"d3", "d1400"}
    lock.release(store.run_id)
