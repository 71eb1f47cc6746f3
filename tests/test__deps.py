"""tasks._deps: one backend (and token cache) per worker process, shared by its threads,
each task's requests still counted in its own run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cxsweep.platforms.token import Token
from cxsweep.runs import keys
from cxsweep.runs.store import RunStore
from cxsweep.settings import get_settings
from tasks import _deps


@pytest.fixture
def fresh_backend() -> Iterator[None]:
    """Settings reloaded: the next ``shared_backend()`` is built anew (an empty local
    token copy), as in a worker process that just started."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def new_store(client: redis.Redis) -> RunStore:
    return RunStore(client, f"run-{uuid.uuid4().hex[:12]}")


def new_list(sim: Any, count: int = 30) -> str:
    list_id = f"list-{uuid.uuid4().hex[:8]}"
    sim.put_list(list_id, count=count, seed=5)
    return list_id


@pytest.mark.usefixtures("fresh_backend")
def test_one_backend_per_process_until_the_settings_change(redis_client: redis.Redis) -> None:
    first = _deps.shared_backend()
    assert _deps.shared_backend() is first
    with _deps.api_backend(new_store(redis_client)) as backend:
        assert backend is first
    get_settings.cache_clear()  # settings reloaded: a backend that sees them
    assert _deps.shared_backend() is not first


@pytest.mark.usefixtures("fresh_backend")
def test_the_token_is_read_from_redis_once_per_refresh_not_per_task(
    simulator: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_id = new_list(simulator)
    tokens = _deps.shared_backend().tokens  # type: ignore[attr-defined]
    reads: list[Token | None] = []
    read = tokens._read

    def counted() -> Token | None:
        reads.append(read())
        return reads[-1]

    monkeypatch.setattr(tokens, "_read", counted)
    with _deps.api_backend(new_store(redis_client)) as backend:
        backend.read_page(list_id, None)
    first_task = len(reads)
    assert 1 <= first_task <= 2  # the cached token, or a grant under the lock
    for _ in range(4):  # more tasks: no token look-up in Redis at all
        with _deps.api_backend(new_store(redis_client)) as backend:
            backend.read_page(list_id, None)
    assert len(reads) == first_task


@pytest.mark.usefixtures("fresh_backend")
def test_threads_share_the_backend_and_count_their_own_requests_and_a_401_refreshes_once(
    simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list(simulator)
    with _deps.api_backend(new_store(redis_client)) as backend:
        backend.read_page(list_id, None)  # a token in hand
    grants_before = simulator.stats()["requests"].get("token", 0)
    simulator.revoke_tokens()  # every thread's next call meets a 401

    stores = [new_store(redis_client) for _ in range(4)]
    reads_per_task = [1, 2, 3, 1]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []
    used: set[int] = set()

    def task(store: RunStore, reads: int) -> None:
        try:
            with _deps.api_backend(store, tag="pass") as backend:
                used.add(id(backend))
                barrier.wait(timeout=10)
                for _ in range(reads):
                    backend.read_page(list_id, None)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=task, args=pair)
        for pair in zip(stores, reads_per_task, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(used) == 1  # one backend for the threads of the process

    # One new grant for all the threads that met the 401 (the fleet's lock).
    assert simulator.stats()["requests"].get("token", 0) == grants_before + 1
    for store, reads in zip(stores, reads_per_task, strict=True):
        counts = store.counts()
        # Each task's own reads, in its own run: retried after a 401 or not.
        assert counts["pass_requests"] == counts[keys.API_REQUESTS]
        assert counts[keys.calls_counter("read")] in (reads, reads + 1)
    # A thread that met the 401 read again; one that started after the new token came
    # in never met it.
    total_reads = sum(s.counts()[keys.calls_counter("read")] for s in stores)
    assert sum(reads_per_task) < total_reads <= sum(reads_per_task) + len(stores)
