"""workers.config: task events are off by default, and Flower's way of turning them on
in running workers (the ``enable_events`` control command) still works."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from console.demo import stop_workers, worker_command
from workers import app, config

REPO = Path(__file__).resolve().parent.parent


def test_task_events_are_off_by_default() -> None:
    # ~4 PUBLISH per task for nobody when no monitor runs (bench/PROFILE.md, cut 3).
    assert config.worker_send_task_events is False
    assert config.task_send_sent_event is False
    assert app.conf.worker_send_task_events is False


class _Events:
    """Every event on the broker, seen from a thread (as Flower's receiver sees them)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._connection = app.connection_for_read()
        self.receiver = app.events.Receiver(self._connection, handlers={"*": self.seen.append})
        self._thread = threading.Thread(target=self.receiver.capture, daemon=True)

    def __enter__(self) -> _Events:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.should_stop = True
        self._thread.join(timeout=10)
        self._connection.release()

    def of(self, task_id: str) -> list[str]:
        return [e["type"] for e in list(self.seen) if e.get("uuid") == task_id]

    def wait_for(self, predicate: Any, seconds: float = 15.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False


def test_flower_enables_task_events_on_running_workers(tmp_path: Path) -> None:
    # A real worker process (the in-process test worker runs without heartbeats, so it
    # has no event dispatcher at all), on a queue of its own so it takes no other test's
    # tasks. A worker started with both --without-heartbeat and --without-gossip could
    # not be turned on either (docs/operations.md says so).
    queue, name = f"cxsweep.test-events-{uuid.uuid4().hex[:8]}", f"events-{uuid.uuid4().hex[:8]}"
    log = (tmp_path / "worker.log").open("wb")
    command = worker_command(name, pool="threads", concurrency=2, queues=queue)
    worker = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    hostname = f"{name}@{socket.gethostname()}"
    task = "tasks.sweep.send_webhook"  # for a run that does not exist: skipped at once

    def send() -> Any:
        return app.send_task(task, args=[f"no-run-{uuid.uuid4().hex}"], queue=queue)

    try:
        with _Events() as events:
            assert events.wait_for(
                lambda: bool(app.control.ping(destination=[hostname], timeout=0.5)), 90
            ), f"the worker did not come up: {(tmp_path / 'worker.log').read_text()[-2000:]}"
            probe = f"probe-{uuid.uuid4().hex}"
            with app.events.default_dispatcher() as dispatcher:
                # The receiver is listening once it sees an event of ours.
                assert events.wait_for(
                    lambda: (
                        dispatcher.send("cxsweep-probe", uuid=probe) is None
                        and any(e.get("uuid") == probe for e in list(events.seen))
                    )
                ), "the event receiver never saw the probe"
            quiet = send()
            # disable_sync_subtasks=False: once the session's in-process worker has run,
            # this process counts as a worker (conftest's sweep_worker says why); these
            # results are the test's own, not a task's.
            assert quiet.get(timeout=60, disable_sync_subtasks=False)["skipped"] is True
            # What Flower sends every 5 s (its --enable_events, on by default).
            replies = app.control.enable_events(destination=[hostname], reply=True, timeout=5)
            assert replies == [{hostname: {"ok": "task events enabled"}}]
            watched = send()
            assert watched.get(timeout=60, disable_sync_subtasks=False)["skipped"] is True
            assert events.wait_for(lambda: "task-succeeded" in events.of(watched.id))
            assert {"task-received", "task-started"} <= set(events.of(watched.id))
            # Events are ordered: the task run before Flower's command published none.
            assert events.of(quiet.id) == []
            # task-sent is the sender's event: off, whatever the workers do.
            assert "task-sent" not in events.of(watched.id)
    finally:
        stop_workers([worker])
        log.close()


def test_a_worker_shortens_the_gil_switch_interval() -> None:
    """Set as the worker starts (``worker_init``), before any task runs."""
    from celery.signals import worker_init

    from workers import _signals

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        worker_init.send(sender=None)
        assert sys.getswitchinterval() == pytest.approx(_signals.GIL_SWITCH_SECONDS)
        assert _signals.GIL_SWITCH_SECONDS < 0.005
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize("signal_name", ["worker_ready", "worker_process_init"])
def test_a_worker_freezes_its_boot_heap_and_collects_less_often(signal_name: str) -> None:
    """The threads pool's process (``worker_ready``) and each prefork or solo pool's
    (``worker_process_init``) freeze what they built to boot, so that full collections
    no longer walk it, and raise the young generation's threshold."""
    import gc

    from celery import signals

    from workers import _signals

    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    try:
        gc.set_threshold(700, 10, 10)
        getattr(signals, signal_name).send(sender=None)
        assert gc.get_threshold() == _signals.GC_THRESHOLDS
        assert _signals.GC_THRESHOLDS[0] > 700
        # This test process's own heap (pytest, the project) is what was frozen.
        assert gc.get_freeze_count() > frozen_before + 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
