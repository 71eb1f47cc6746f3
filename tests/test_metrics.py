"""Prometheus metrics of the workers, and their structured logs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from console import launch
from cxsweep import logs
from cxsweep.errors import SettingsError
from cxsweep.platforms.factory import make_backend
from cxsweep.redisconn import get_redis
from cxsweep.runs.store import RunStore
from cxsweep.settings import load_settings
from devtools.localredis import free_port
from tests._stack import finish, make_stack, wait_until
from workers import _metrics, _signals


@pytest.fixture
def metrics_url() -> Iterator[str]:
    port = free_port()
    server = _metrics.start_metrics_server(port, addr="127.0.0.1")
    assert server is not None
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    server.server_close()
    _metrics._server = None


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


@pytest.mark.usefixtures("sweep_worker")
def test_metrics_endpoint_serves_the_counters_after_a_run(simulator: Any, metrics_url: str) -> None:
    list_id = f"metrics-{uuid.uuid4().hex[:6]}"
    simulator.put_list(list_id, count=300, seed=5)
    simulator.configure(page_size=100)
    simulator.add_faults(
        [{"method": "GET", "path": "/contactlists/", "action": 429, "after": 0, "times": 1}]
    )
    before = scrape(metrics_url)
    settings = launch.settings_for_run()
    # A token in the fleet's cache first: the CLI's own check then sends nothing, and
    # every request of the run is a worker's, which is what the workers export (the
    # run's record also counts a grant the CLI sends).
    make_backend(settings, get_redis(settings.redis_url)).check_credentials()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    record = launch.wait_for_run(settings, run_id, timeout=120, quiet=True)
    assert record["status"] == "completed", record
    after = scrape(metrics_url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("cxsweep_runs_total", status="completed") == 1
    assert delta("cxsweep_contacts_processed_total") == 300
    assert delta("cxsweep_contacts_updated_total") == record["success_count"]
    assert delta("cxsweep_contacts_removed_total") == record["purge_count"]
    assert delta("cxsweep_contacts_kept_total") == 300 - record["planned_removals"]
    assert delta("cxsweep_rejects_total") == sum(record["reject_reasons"].values()) > 0
    for reason, count in record["reject_reasons"].items():
        assert delta("cxsweep_rejects_total", reason=reason) == count
    # Live API metrics, from the backend's observer.
    assert delta("cxsweep_api_requests_total", kind="read", status="200") >= 3
    assert delta("cxsweep_api_requests_total", status="429") >= 1
    assert delta("cxsweep_api_rate_limited_total", kind="read") >= 1
    assert delta("cxsweep_api_request_duration_seconds_count", kind="read") >= 4
    assert delta("cxsweep_task_retries_total", task="tasks.sweep.fetch_page") >= 1
    assert delta("cxsweep_api_requests_total") == record["api_requests"]


PREFORK_SCRIPT = textwrap.dedent(
    """
    import os
    from workers import _metrics
    directory = _metrics.enable_multiprocess()
    from cxsweep import metrics
    from prometheus_client import generate_latest
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            for _ in range(3):
                metrics.observe_api("read", 200, 0.02)
            metrics.observe_run({"status": "completed", "total_processed": 10})
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
        _metrics.child_exited(pid)
    print(generate_latest(_metrics.registry()).decode())
    _metrics.shutdown()
    print("removed" if not os.path.exists(directory) else "left")
    """
)


def test_prefork_children_are_summed_by_the_main_process() -> None:
    env = {k: v for k, v in os.environ.items() if k != _metrics.MULTIPROC_ENV}
    done = subprocess.run(
        [sys.executable, "-c", PREFORK_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(done.stdout.rsplit("\n", 2)[0])
        for s in family.samples
    }
    assert total(samples, "cxsweep_api_requests_total", kind="read", status="200") == 6
    assert total(samples, "cxsweep_api_request_duration_seconds_count", kind="read") == 6
    assert total(samples, "cxsweep_runs_total", status="completed") == 2
    assert total(samples, "cxsweep_contacts_processed_total") == 20
    assert done.stdout.strip().endswith("removed")


def test_json_log_lines_carry_the_task_ids_with_numbers_masked(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.read import plan_ready

    run_id = f"run-{uuid.uuid4().hex[:6]}"
    RunStore(redis_client, run_id).create("list-42", dry_run=True, options={})
    monkeypatch.setattr(_signals, "_LOG_FORMAT", "json")
    # A chord callback: the header's results first, then the run id.
    _signals._bind_task_context(task_id="task-1", task=plan_ready, args=([{"ok": True}], run_id))
    try:
        record = logging.LogRecord(
            "tasks.sweep", logging.WARNING, __file__, 1, "bad number %s", ("+1 650 253 0000",), None
        )
        line = json.loads(logs.JsonFormatter().format(record))
    finally:
        _signals._unbind_task_context(task_id="task-1")
    assert line["message"] == "bad number +1650***0000"
    assert line["run_id"] == run_id and line["list_id"] == "list-42"
    assert line["task_id"] == "task-1" and line["task_name"] == "tasks.sweep.plan_ready"
    assert line["level"] == "WARNING" and line["logger"] == "tasks.sweep"
    assert logs.bound() == {}, "the context ends with the task"
    assert load_settings({"CXSWEEP_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError):
        load_settings({"CXSWEEP_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_a_worker_started_as_the_readme_says_exports_its_counters(
    tmp_path: Path, pool: str
) -> None:
    """``celery -A workers worker`` in a process of its own, one sweep, one scrape."""
    port = free_port()
    stack_iter = make_stack(tmp_path, page_size=100)
    stack = next(stack_iter)
    try:
        stack.extra_env["CXSWEEP_METRICS_PORT"] = str(port)
        stack.sim.put_list("metrics-e2e", count=400, seed=3)
        worker = stack.start_worker(pool, pool=pool)
        url = f"http://127.0.0.1:{port}/metrics"

        def serving() -> bool:
            try:
                scrape(url)
            except OSError:
                return False
            return True

        assert wait_until(serving, timeout=60, interval=0.2), stack.worker_log(pool)
        code, record, err = finish(stack.run_cli("metrics-e2e"), timeout=120)
        assert code == 0 and record is not None, err + stack.worker_log(pool)
        samples = scrape(url)
        assert total(samples, "cxsweep_contacts_processed_total") == 400
        assert total(samples, "cxsweep_runs_total", status="completed") == 1
        assert total(samples, "cxsweep_contacts_removed_total") == record["purge_count"] > 0
        # The run's one token grant is the CLI's (it checks the credentials before the
        # run starts; the worker reuses that token): in the record, not in the worker.
        assert record["api_latency_ms"]["token"]["requests"] == 1
        assert total(samples, "cxsweep_api_requests_total", kind="token") == 0
        assert total(samples, "cxsweep_api_requests_total") == record["api_requests"] - 1
        assert total(samples, "cxsweep_api_request_duration_seconds_count", kind="read") >= 4
        log = stack.worker_log(pool)
        assert "will not be exported" not in log, log
        assert worker.poll() is None
    finally:
        with contextlib.suppress(StopIteration):
            next(stack_iter)
