"""The list lock's module (cxsweep/runs/lock.py): whether Redis keeps what a run holds,
read from CONFIG or, where CONFIG is not permitted, from INFO; a private redis-server
each."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from cxsweep.runs.lock import persistence_problem
from devtools.localredis import LocalRedis


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), ""),
        (("--maxmemory-policy", "allkeys-lru"), "may evict keys (maxmemory-policy allkeys-lru"),
        (("--rename-command", "CONFIG", "cfg-hidden"), ""),
        (
            ("--appendonly", "no", "--rename-command", "CONFIG", "cfg-hidden"),
            "shows no persistence in INFO persistence (CONFIG not permitted",
        ),
    ],
)
def test_persistence_is_read_from_config_or_else_info(
    tmp_path: Path, args: tuple[str, ...], problem: str
) -> None:
    server = LocalRedis(directory=str(tmp_path / "redis"), extra_args=args).start()
    try:
        client = redis.Redis.from_url(server.url)
        found = persistence_problem(client)
        assert found.startswith(problem) if problem else found == ""
        client.close()
    finally:
        server.stop()
