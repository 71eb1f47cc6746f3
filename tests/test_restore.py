"""Tests mirroring ``cxsweep/runs/restore.py``: an archive page put back on the
simulator (over real sockets) through guarded writes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from cxsweep.platforms.factory import make_backend
from cxsweep.runs.lock import ListLock
from cxsweep.runs.restore import restore_page
from cxsweep.runs.store import RunStore
from cxsweep.runs.writes import WriteStopped
from cxsweep.settings import get_settings


def swept_list(client: redis.Redis, simulator: Any) -> tuple[str, RunStore, dict[str, Any]]:
    """A list a run changed: it removed ``gone``, rewrote ``fixed`` (from E.164) and
    ``raw`` (from a number v2 would not PATCH back). Its archive holds them as read."""
    list_id = f"restore-{uuid.uuid4().hex[:8]}"
    before = {
        "gone": {"id": f"{list_id}-gone", "phone": "+16502530000", "name": "g"},
        "fixed": {"id": f"{list_id}-fixed", "phone": "+16502530001", "name": "f"},
        "raw": {"id": f"{list_id}-raw", "phone": "(650) 253-0002", "name": "r"},
    }
    simulator.put_list(
        list_id,
        contacts=[
            {**before["fixed"], "phone": "+16502539991"},
            {**before["raw"], "phone": "+16502530002"},
        ],
    )
    source = RunStore(client, f"test-src-{uuid.uuid4().hex[:10]}")
    source.create(list_id, dry_run=False, options={})
    source.commit_page(0, [], [], {}, archive=list(before.values()))
    lock = ListLock(client, list_id)
    assert lock.acquire(source.run_id)
    source.record_removed([before["gone"]["id"]], [], "remove:0", answered=True)
    lock.release(source.run_id)
    return list_id, source, before


def new_restore(client: redis.Redis, list_id: str, source: RunStore) -> RunStore:
    restore = RunStore(client, f"test-restore-{uuid.uuid4().hex[:10]}")
    restore.create(list_id, dry_run=False, options={"restore_of": source.run_id})
    assert ListLock(client, list_id).acquire(restore.run_id)
    return restore


def test_restore_page_puts_the_list_back(redis_client: redis.Redis, simulator: Any) -> None:
    backend = make_backend(get_settings(), redis_client)
    list_id, source, before = swept_list(redis_client, simulator)
    restore = new_restore(redis_client, list_id, source)
    result = restore_page(restore, source, backend, list_id, 0, threshold=5)
    assert result == {"ok": True, "page": 0, "recreated": 2, "reverted": 1}
    now = {c["id"]: c["phone"] for c in simulator.get_list(list_id)}
    assert now == {c["id"]: c["phone"] for c in before.values()}
    assert restore.chunk_done("restore", 0)
    # A redelivered task finds every contact restored and writes nothing again.
    again = restore_page(restore, source, backend, list_id, 0, threshold=5)
    assert again["recreated"] == 0 and again["reverted"] == 0
    assert restore.writers_active(within=60) == 0
    ListLock(redis_client, list_id).release(restore.run_id)


def test_a_cancelled_restore_writes_nothing(redis_client: redis.Redis, simulator: Any) -> None:
    backend = make_backend(get_settings(), redis_client)
    list_id, source, _ = swept_list(redis_client, simulator)
    restore = new_restore(redis_client, list_id, source)
    restore.cancel("operator")
    untouched = simulator.get_list(list_id)
    with pytest.raises(WriteStopped, match="cancelled"):
        restore_page(restore, source, backend, list_id, 0, threshold=5)
    assert simulator.get_list(list_id) == untouched
    assert not restore.chunk_done("restore", 0)
    ListLock(redis_client, list_id).release(restore.run_id)
