"""Shared fixtures: a real Redis for the whole session.

``CXSWEEP_TEST_REDIS_URL`` names a Redis database the tests may flush (``.ci/run`` sets
it); without it the session starts a private redis-server on a free port.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cxsweep.runs.store import persistence_problem
from cxsweep.settings import get_settings
from devtools.localredis import LocalRedis, free_port, redis_answers
from tests import _amqp
from tests._cxone import PHONES

_private_redis: LocalRedis | None = None
_volatile_redis = ""
_sim_port = free_port()
CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret-value-9f2"


def pytest_configure(config: pytest.Config) -> None:
    global _private_redis
    url = os.environ.get("CXSWEEP_TEST_REDIS_URL", "")
    if not url or not redis_answers(url):
        _private_redis = LocalRedis().start()
        url = _private_redis.url
    os.environ["CXSWEEP_TEST_REDIS_URL"] = url
    # Workers and the CLI in this process read their settings from the environment.
    os.environ["CXSWEEP_REDIS_URL"] = url
    # The broker: that Redis, or with CXSWEEP_TEST_BROKER=amqp a RabbitMQ vhost of this
    # session's own (sessions running at once never share a queue).
    os.environ.pop("CXSWEEP_BROKER_URL", None)
    if os.environ.get("CXSWEEP_TEST_BROKER") == "amqp":
        os.environ["CXSWEEP_BROKER_URL"] = _amqp.session_broker()
    os.environ["CXSWEEP_ENV_FILE"] = os.devnull
    # The session's simulator listens here; its port is fixed before any settings load.
    os.environ["CXSWEEP_API_URL"] = f"http://127.0.0.1:{_sim_port}"
    os.environ["CXSWEEP_CLIENT_ID"] = CLIENT_ID
    os.environ["CXSWEEP_CLIENT_SECRET"] = CLIENT_SECRET
    os.environ["CXSWEEP_AGGREGATOR_URL"] = f"http://127.0.0.1:{_sim_port}/_sim/webhook"
    os.environ["CXSWEEP_WEBHOOK_SECRET"] = "test-webhook-secret"
    os.environ["CXSWEEP_AUDIT_LOG"] = str(
        config.rootpath / ".pytest-audit" / f"audit-{os.getpid()}.log"
    )
    os.environ.setdefault("CXSWEEP_READ_TIMEOUT", "5")
    # CXSWEEP_RATE_LIMIT is left unset: the suite runs at the shipped 10 requests/s. A
    # test that needs another rate sets it itself and says why.
    os.environ.setdefault("CXSWEEP_METRICS_PORT", "0")
    client = redis.Redis.from_url(url)
    client.flushdb()
    global _volatile_redis
    _volatile_redis = persistence_problem(client)
    if _volatile_redis:
        # A shared Redis the suite may not reconfigure (a developer's, a CI service run
        # with --save "" --appendonly no): runs in this process write anyway, as an
        # operator would with the explicit flag. The refusal itself is pinned against a
        # volatile Redis of its own (test_durability.py); private stacks persist.
        os.environ["CXSWEEP_ALLOW_VOLATILE_REDIS"] = "1"


def pytest_report_header(config: pytest.Config) -> str | None:
    if _volatile_redis:
        return f"test Redis {_volatile_redis}: in-process runs pass CXSWEEP_ALLOW_VOLATILE_REDIS=1"
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    if "celery.backends.redis" in sys.modules:
        from celery.backends.redis import ResultConsumer

        # Celery keeps a result backend per thread. The in-process worker's threads
        # subscribe to results whenever allow_join_result() briefly clears the
        # process-wide "inside a worker" flag; at exit each would unsubscribe from a
        # Redis already stopped (20 s of reconnecting). A worker process never exits
        # into a dead Redis like this: forget the subscriptions first.
        for consumer in gc.get_objects():
            if isinstance(consumer, ResultConsumer):
                consumer.subscribed_to.clear()
                consumer._pending_unsubscribe.clear()
    if _private_redis is not None:
        _private_redis.stop()
    _amqp.delete_all()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["CXSWEEP_TEST_REDIS_URL"]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database. Never flush it: the session's workers keep their
    queues there. Tests keep apart by using unique keys (run ids, uuids)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def session_simulator() -> Iterator[Any]:
    from devtools.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(clients={CLIENT_ID: CLIENT_SECRET}), port=_sim_port).start()
    yield sim
    sim.stop()


@pytest.fixture
def simulator(session_simulator: Any) -> Any:
    """The session's simulator, reset: no lists, faults, tokens or counts."""
    session_simulator.reset()
    session_simulator.configure(clients={CLIENT_ID: CLIENT_SECRET})
    return session_simulator


@pytest.fixture(scope="session")
def sweep_worker(session_simulator: Any) -> Iterator[Any]:
    """A real Celery worker (threads) on the project's own app, in this process."""
    from celery._state import _set_task_join_will_block
    from celery.contrib.testing.worker import start_worker

    from workers import app

    with start_worker(
        app,
        pool="threads",
        concurrency=8,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        # A real worker process sets this (start_worker resets it): tasks sent from inside
        # a worker never subscribe to their results. Without it, this test process would
        # hold result subscriptions that try to reconnect to a Redis stopped at exit.
        _set_task_join_will_block(True)
        yield worker


@pytest.fixture
def audit_log_path() -> Path:
    return Path(os.environ["CXSWEEP_AUDIT_LOG"])


def audit_lines(path: Path, run_id: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("run_id") == run_id]


@pytest.fixture
def cxone(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """CXSWEEP_BACKEND=cxone against the session simulator, with a fresh access key.

    A new key per test gives the test its own Redis namespace (token, tenant, API base).
    """
    key_id, key_secret = f"key-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    simulator.configure(access_keys={key_id: key_secret}, job_delay=0.3)
    env = {
        "CXSWEEP_BACKEND": "cxone",
        "CXSWEEP_CXONE_AUTH_URL": simulator.url,
        "CXSWEEP_CXONE_ACCESS_KEY_ID": key_id,
        "CXSWEEP_CXONE_ACCESS_KEY_SECRET": key_secret,
        "CXSWEEP_CXONE_PHONE_COLUMNS": ",".join(PHONES),
        "CXSWEEP_CXONE_UPLOAD_BATCH": "60",
        "CXSWEEP_CXONE_REMOVE_BATCH": "15",
        "CXSWEEP_CXONE_JOB_POLL_SECONDS": "0.2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    monkeypatch.undo()
    get_settings.cache_clear()
