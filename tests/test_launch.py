"""console/launch.py: starting runs on the workers and following them to their record.

Real Redis, the in-process worker and the simulator over sockets where a run must
really go; a private redis-server where Redis itself must fail.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from console import launch
from cxsweep.errors import CxsweepError, OperatorError
from cxsweep.runs.store import FINAL, ListLock, RunStore, prepare_run
from cxsweep.settings import get_settings
from devtools.localredis import LocalRedis


def _new_list(simulator: Any, count: int, seed: int) -> str:
    list_id = f"launch-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=count, seed=seed)
    return list_id


@pytest.mark.parametrize("list_id", ["", "   ", "list\n1", "list\x00"])
def test_a_blank_or_control_list_id_is_refused(list_id: str) -> None:
    with pytest.raises(OperatorError, match="list id"):
        launch.check_list_id(list_id)


def test_a_printable_list_id_passes() -> None:
    assert launch.check_list_id("spring-0425") == "spring-0425"


def test_cancel_refuses_an_unknown_or_ended_run(redis_client: redis.Redis) -> None:
    settings = launch.settings_for_run()
    with pytest.raises(OperatorError, match="no run"):
        launch.cancel(settings, f"nope-{uuid.uuid4().hex[:8]}")
    run_id = prepare_run(redis_client, f"ended-{uuid.uuid4().hex[:8]}", dry_run=True)
    store = RunStore(redis_client, run_id)
    store.set_meta(status="completed")
    with pytest.raises(OperatorError, match="already ended: completed"):
        launch.cancel(settings, run_id)


def test_cancel_asks_once(redis_client: redis.Redis) -> None:
    """No worker takes this run: the request is stored, a second one is told apart."""
    list_id = f"cancel-{uuid.uuid4().hex[:8]}"
    run_id = prepare_run(redis_client, list_id, dry_run=True)
    settings = launch.settings_for_run()
    try:
        assert launch.cancel(settings, run_id) is True
        assert launch.cancel(settings, run_id) is False
    finally:
        ListLock(redis_client, list_id).release(run_id)


def test_restore_of_a_run_without_archive_is_refused() -> None:
    with pytest.raises(OperatorError, match="has no archive to restore"):
        launch.start_restore(launch.settings_for_run(), f"nope-{uuid.uuid4().hex[:8]}")


def test_a_refusal_before_launch_fails_the_run_and_frees_the_list(
    simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = _new_list(simulator, 20, seed=41)
    started: list[str] = []

    def refuse(store: RunStore) -> None:
        started.append(store.run_id)
        raise CxsweepError("not this one")

    with pytest.raises(CxsweepError, match="not this one"):
        launch.start_run(launch.settings_for_run(), list_id, dry_run=False, before_launch=refuse)
    store = RunStore(redis_client, started[0])
    assert store.meta()["status"] == "failed" and "refused before" in store.meta()["error"]
    assert not store.begun()
    assert ListLock(redis_client, list_id).holder() is None


@pytest.mark.usefixtures("sweep_worker")
def test_a_run_is_followed_to_its_record_through_on_progress(simulator: Any) -> None:
    list_id = _new_list(simulator, 120, seed=42)
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=True)
    seen: list[tuple[str, float]] = []
    record = launch.wait_for_run(
        settings,
        run_id,
        timeout=120,
        on_progress=lambda meta, counts, elapsed: seen.append((meta["status"], elapsed)),
    )
    assert record["run_id"] == run_id and record["status"] == "completed"
    assert record["total_processed"] == 120
    assert seen and seen[-1][0] in FINAL
    assert [e for _, e in seen] == sorted(e for _, e in seen)


def test_waiting_says_when_redis_lost_the_run(tmp_path: Path) -> None:
    """Redis restarted without its data mid-run: waiting says so and gives up."""
    server = LocalRedis(directory=str(tmp_path / "redis-1")).start()
    try:
        client = redis.Redis.from_url(server.url)
        list_id = f"lost-{uuid.uuid4().hex[:8]}"
        run_id = prepare_run(client, list_id, dry_run=True)
        client.close()
        settings = dataclasses.replace(get_settings(), redis_url=server.url)
        outcome: dict[str, Any] = {}

        def wait() -> None:
            try:
                launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
            except CxsweepError as exc:
                outcome["error"] = str(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        server.kill()
        # Back on the same port, empty: a restart without persistence.
        server = LocalRedis(port=server.port, directory=str(tmp_path / "redis-2")).start()
        waiter.join(timeout=30)
        assert not waiter.is_alive()
        assert "Redis lost the state of run" in outcome.get("error", ""), outcome
    finally:
        server.stop()
