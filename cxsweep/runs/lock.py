"""One run per list (``ListLock``), and whether Redis keeps what a run holds there
(``persistence_problem``): the two checks a run passes before it may write."""

from __future__ import annotations

import contextlib

import redis
from redis.lock import Lock

from cxsweep.redisconn import text
from cxsweep.runs import keys

# The list lock must outlive any message of the run the broker may still deliver: a dead
# worker's task comes back after the visibility timeout, and may then wait out a retry
# countdown (at most 300 s, tasks/_deps.py) and run up to its hard time limit (660 s).
LOCK_MARGIN = 300 + 660 + 240


def lock_ttl() -> float:
    from cxsweep.settings import get_settings

    return float(get_settings().visibility_timeout + LOCK_MARGIN)


class ListLock:
    """One run per list, across machines: redis-py's Lock with the run id as its token,
    so any worker of the run can renew or release it and nobody else can."""

    def __init__(self, client: redis.Redis, list_id: str, ttl: float | None = None) -> None:
        self.key = keys.list_lock(list_id)
        self.ttl = lock_ttl() if ttl is None else ttl
        self._lock = Lock(client, self.key, timeout=self.ttl, thread_local=False)
        self._client = client

    def acquire(self, run_id: str) -> bool:
        return bool(self._lock.acquire(blocking=False, token=run_id))

    def holder(self) -> str | None:
        return text(self._client.get(self.key)) or None

    def _as(self, run_id: str) -> Lock:
        self._lock.local.token = run_id.encode()
        return self._lock

    def renew(self, run_id: str) -> bool:
        try:
            return bool(self._as(run_id).reacquire())
        except redis.exceptions.LockError:
            return False

    def release(self, run_id: str) -> None:
        # Expired or taken over: nothing of ours to release.
        with contextlib.suppress(redis.exceptions.LockError):
            self._as(run_id).release()


def persistence_problem(client: redis.Redis) -> str:
    """Why this Redis could lose a run's state (its plan, archive and markers) while the
    run writes, or "" when it persists and never evicts.

    Read with CONFIG GET; where CONFIG is not permitted (managed Redis), from INFO.
    """
    problems = []
    try:
        pipe = client.pipeline(transaction=False)
        for name in ("appendonly", "save", "maxmemory-policy"):
            pipe.config_get(name)
        found: dict[str, str] = {}
        for answer in pipe.execute():
            found.update({text(k): text(v) for k, v in answer.items()})
        persists = found.get("appendonly") == "yes" or bool(found.get("save", "").strip())
        if not persists:
            problems.append("does not persist (appendonly no, no save points)")
        policy = found.get("maxmemory-policy", "")
    except redis.exceptions.ResponseError:
        # CONFIG is renamed or not permitted (managed Redis): INFO tells AOF and whether
        # snapshots happen, not the save points themselves.
        info = client.info("persistence")
        persists = info.get("aof_enabled") == 1 or int(info.get("rdb_saves", 0) or 0) > 0
        if not persists:
            problems.append(
                "shows no persistence in INFO persistence (CONFIG not permitted: aof_enabled 0,"
                " no RDB snapshot since start)"
            )
        policy = str(client.info("memory").get("maxmemory_policy", ""))
    if policy and policy != "noeviction":
        problems.append(f"may evict keys (maxmemory-policy {policy}, not noeviction)")
    return " and ".join(problems)
