"""Scheduled sweeps: every list once, a few at a time, busy and excluded lists skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery.schedules import crontab
from redbeat import RedBeatSchedulerEntry

import tasks._deps
from cxsweep.errors import SettingsError
from cxsweep.runs.store import ACTIVE, RUN_INDEX, ListLock, RunStore
from cxsweep.settings import get_settings, load_settings
from tasks import schedule
from tasks.schedule import CURRENT_SWEEP, SweepStore, advance_sweep, sweep_all_lists

pytestmark = pytest.mark.usefixtures("sweep_worker")


def _reload_policy() -> None:
    get_settings.cache_clear()
    tasks._deps.policy.cache_clear()
    tasks._deps._sanitizer.cache_clear()


@pytest.fixture
def use_policy(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Point this process's workers at a policy file for one test."""
    saved = os.environ.get("CXSWEEP_POLICY_FILE")

    def use(text: str) -> None:
        path = tmp_path / "policy.toml"
        path.write_text(text)
        os.environ["CXSWEEP_POLICY_FILE"] = str(path)
        _reload_policy()

    yield use
    if saved is None:
        os.environ.pop("CXSWEEP_POLICY_FILE", None)
    else:
        os.environ["CXSWEEP_POLICY_FILE"] = saved
    _reload_policy()


def wait_for_sweep(
    client: redis.Redis, sweep_id: str, limit: int, timeout: float = 180
) -> tuple[dict[str, str], int]:
    """Wait for the sweep to finish; returns its meta and the most runs seen active."""
    store = SweepStore(client, sweep_id)
    most = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [RunStore(client, r).meta().get("status") for r in store.runs().values()]
        most = max(most, sum(status in ACTIVE for status in statuses))
        assert most <= limit, f"{most} runs of the sweep active at once (limit {limit})"
        meta = store.meta()
        if meta.get("status") != "running":
            return meta, most
        time.sleep(0.05)
    raise AssertionError(f"sweep {sweep_id} did not finish: {store.meta()}")


def test_beat_sweep_runs_every_list_once_skipping_busy_and_excluded(
    simulator: Any,
    redis_client: redis.Redis,
    use_policy: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"sched-{uuid.uuid4().hex[:6]}"
    plain = [f"{prefix}-{n}" for n in range(5)]
    busy, excluded, own = f"{prefix}-busy", f"{prefix}-excluded", f"{prefix}-own"
    for seed, list_id in enumerate([*plain, busy, excluded, own]):
        simulator.put_list(list_id, count=60, seed=seed)
    use_policy(
        f"""
[default]
max_purge_ratio = 1.0

[[lists]]
match = "{excluded}"
exclude = true

[[lists]]
match = "{own}"
schedule = "15 4 * * 1-5"
"""
    )
    monkeypatch.setenv("CXSWEEP_MAX_CONCURRENT_RUNS", "2")
    redis_client.delete(CURRENT_SWEEP)  # a sweep left by an earlier, failed test
    lock = ListLock(redis_client, busy)
    assert lock.acquire("held-by-the-test")
    started_at = time.time()
    try:
        result = sweep_all_lists(poll_seconds=0.1)
        sweep_id = result["sweep_id"]
        assert result["queued"] == len(plain) + 1  # the busy list is queued, then skipped

        # A second firing while the first is running (a duplicate message) starts nothing.
        again = sweep_all_lists(poll_seconds=0.1)
        assert again.get("skipped") and again["running"] == sweep_id

        meta, most = wait_for_sweep(redis_client, sweep_id, limit=2)
        assert lock.holder() == "held-by-the-test", "the busy list was left alone"
    finally:
        lock.release("held-by-the-test")

    assert meta["status"] == "done"
    assert (meta["started"], meta["busy"], meta["excluded"], meta["own_schedule"]) == (
        "5",
        "1",
        "1",
        "1",
    )
    assert most >= 1
    runs = SweepStore(redis_client, sweep_id).runs()
    assert set(runs) == set(plain)
    for list_id, run_id in runs.items():
        run = RunStore(redis_client, run_id).meta()
        assert run["status"] == "completed", (list_id, run)
        assert run["list_id"] == list_id
    # Each list was run exactly once, and none of the skipped ones ran at all.
    ran: dict[str, int] = {}
    for raw in cast(list[bytes], redis_client.zrangebyscore(RUN_INDEX, started_at - 1, "+inf")):
        list_id = RunStore(redis_client, raw.decode()).meta().get("list_id", "")
        if list_id.startswith(prefix):
            ran[list_id] = ran.get(list_id, 0) + 1
    assert ran == {list_id: 1 for list_id in plain}
    assert redis_client.get(CURRENT_SWEEP) is None

    # The list with its own schedule has its own RedBeat entry instead.
    app = sweep_all_lists.app
    key = RedBeatSchedulerEntry.generate_key(app, f"list:{own}")
    entry = RedBeatSchedulerEntry.from_key(key, app=app)
    assert entry.task == "tasks.schedule.sweep_list" and entry.args == [own]
    assert entry.schedule == crontab(minute="15", hour="4", day_of_week="1-5")
    assert entry.last_run_at is not None, "a new entry must not be due at once"
    schedule.sync_list_entries(app, {})
    with pytest.raises(KeyError):
        RedBeatSchedulerEntry.from_key(key, app=app)


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def delay(self, *args: Any) -> None:
        self.calls.append(args)


def test_advance_keeps_at_most_the_limit_of_runs_active(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """advance_sweep alone, with the runs' progress played by the test."""
    begin = _Recorder()
    again: list[tuple[str, float]] = []
    monkeypatch.setattr(schedule, "begin_run", begin)
    monkeypatch.setattr(schedule, "_reschedule", lambda s, c: again.append((s, c)))
    prefix = f"adv-{uuid.uuid4().hex[:6]}"
    lists = [f"{prefix}-{n}" for n in range(5)]
    sweep_id = f"sweep-test-{uuid.uuid4().hex[:6]}"
    store = SweepStore(redis_client, sweep_id)
    store.create(lists, max_runs=2, poll_seconds=1.5, dry_run=True)
    assert ListLock(redis_client, lists[3]).acquire("someone-else")

    def finish(run_id: str) -> None:
        RunStore(redis_client, run_id).set_meta(status="completed")

    first = advance_sweep(sweep_id)
    assert len(first["started"]) == 2 and first["pending"] == 3
    assert [c[0] for c in begin.calls] == first["started"]
    assert again == [(sweep_id, 1.5)]

    assert advance_sweep(sweep_id)["started"] == [], "no slot is free"
    finish(first["started"][0])
    second = advance_sweep(sweep_id)
    assert len(second["started"]) == 1 and store.pending() == [lists[3], lists[4]]

    for run_id in [*first["started"], *second["started"]]:
        finish(run_id)
    third = advance_sweep(sweep_id)
    # lists[3] is busy: skipped and dropped, not kept for later; lists[4] starts.
    assert len(third["started"]) == 1 and third["pending"] == 0
    assert store.meta()["busy"] == "1"
    finish(third["started"][0])
    calls = len(again)
    assert advance_sweep(sweep_id) == {"ok": True, "started": [], "active": 0, "pending": 0}
    assert store.meta()["status"] == "done"
    assert len(again) == calls, "a finished sweep does not come back"
    assert set(store.runs()) == {lists[0], lists[1], lists[2], lists[4]}
    for list_id in lists:
        ListLock(redis_client, list_id).release(store.runs().get(list_id, "someone-else"))


def test_list_entries_follow_the_policy(redis_client: redis.Redis) -> None:
    app = sweep_all_lists.app
    list_id = f"entry-{uuid.uuid4().hex[:6]}"
    key = RedBeatSchedulerEntry.generate_key(app, f"list:{list_id}")
    assert schedule.sync_list_entries(app, {list_id: "0 3 * * *"})["created"] == 1
    created = RedBeatSchedulerEntry.from_key(key, app=app)
    assert schedule.sync_list_entries(app, {list_id: "0 3 * * *"})["updated"] == 0
    assert schedule.sync_list_entries(app, {list_id: "30 5 * * *"})["updated"] == 1
    updated = RedBeatSchedulerEntry.from_key(key, app=app)
    assert updated.schedule == crontab(minute="30", hour="5")
    assert updated.last_run_at == created.last_run_at, "an update keeps the entry's history"
    # Celery cannot parse it: no entry (the all-lists sweep takes the list instead).
    assert schedule.sync_list_entries(app, {list_id: "0 3 L * *"}) == {
        "created": 0,
        "updated": 0,
        "deleted": 1,
        "invalid": 1,
    }
    with pytest.raises(KeyError):
        RedBeatSchedulerEntry.from_key(key, app=app)


def test_bad_schedule_stops_beat_with_one_line() -> None:
    env = {**os.environ, "CXSWEEP_SWEEP_SCHEDULE": "61 2 * * *"}
    done = subprocess.run(
        [sys.executable, "-c", "import workers"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.startswith("cxsweep: CXSWEEP_SWEEP_SCHEDULE='61 2 * * *'")
    assert len(done.stderr.strip().splitlines()) == 1
    assert load_settings({"CXSWEEP_MAX_CONCURRENT_RUNS": "3"}).max_concurrent_runs == 3
    with pytest.raises(SettingsError, match="CXSWEEP_MAX_CONCURRENT_RUNS"):
        load_settings({"CXSWEEP_MAX_CONCURRENT_RUNS": "0"})
