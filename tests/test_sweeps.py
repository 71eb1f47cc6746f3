"""Tests mirroring ``cxsweep/runs/sweeps.py``: a scheduled sweep's bookkeeping in Redis."""

from __future__ import annotations

import uuid

import redis

from cxsweep.runs.keys import SWEEP_INDEX
from cxsweep.runs.sweeps import SweepStore


def new_sweep(client: redis.Redis, lists: list[str]) -> SweepStore:
    store = SweepStore(client, f"sweep-{uuid.uuid4().hex[:10]}")
    store.create(lists, max_runs=2, poll_seconds=1.5, dry_run=True)
    return store


def test_create_records_limits_and_the_pending_lists(redis_client: redis.Redis) -> None:
    store = new_sweep(redis_client, ["a", "b", "c"])
    meta = store.meta()
    assert meta["status"] == "running" and meta["queued"] == "3"
    assert meta["max_concurrent_runs"] == "2" and meta["dry_run"] == "1"
    assert store.pending() == ["a", "b", "c"] and store.next_pending() == "a"
    assert redis_client.zscore(SWEEP_INDEX, store.sweep_id) is not None
    assert 0 < redis_client.ttl(store.pending_key) <= 7 * 24 * 3600


def test_an_empty_sweep_has_nothing_pending(redis_client: redis.Redis) -> None:
    store = new_sweep(redis_client, [])
    assert store.pending() == [] and store.next_pending() is None
    assert store.meta()["queued"] == "0"


def test_started_moves_a_list_from_pending_to_active(redis_client: redis.Redis) -> None:
    store = new_sweep(redis_client, ["a", "b"])
    store.started("a", "run-a")
    store.started("b", "run-b")
    assert store.pending() == []
    assert store.active() == ["run-a", "run-b"]
    assert store.runs() == {"a": "run-a", "b": "run-b"}
    assert store.meta()["started"] == "2"


def test_skip_drop_and_counts(redis_client: redis.Redis) -> None:
    store = new_sweep(redis_client, ["a", "b", "c"])
    store.drop_pending("b")
    store.skip("b", "locked by another run " + "x" * 400)
    assert store.pending() == ["a", "c"]
    assert len(store.skipped()["b"]) == 300
    store.count("finished")
    store.count("finished", 2)
    store.count("failed", 0)
    store.set_meta(status="completed")
    meta = store.meta()
    assert meta["finished"] == "3" and "failed" not in meta and meta["status"] == "completed"
