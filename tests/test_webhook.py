"""The webhook outbox: delivered, retried for a day, or failed with the reason; never a
redirect followed. Real Redis, real sockets, the session's worker for whole runs."""

from __future__ import annotations

import http.server
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from console import cli, launch
from cxsweep.errors import RetryableApiError
from cxsweep.runs import webhook
from cxsweep.settings import Secret, get_settings
from devtools.localredis import free_port
from devtools.simulator import Simulator

PAYLOAD = {"event": webhook.EVENT_COMPLETE, "run_id": "r1", "metrics": {}}


class _Redirecting(http.server.BaseHTTPRequestHandler):
    location = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[Simulator]:
    with Simulator(host="127.0.0.2") as other:
        yield other


@pytest.fixture
def redirecting(elsewhere: Simulator) -> Iterator[str]:
    """A receiver answering 302 towards ``elsewhere`` (with a token in the query)."""
    location = f"{elsewhere.url}/_sim/webhook?token=s3cr3t"
    handler = type("Handler", (_Redirecting,), {"location": location})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def outbox(redis_client: redis.Redis) -> webhook.Outbox:
    return webhook.Outbox(redis_client)


# --- post --------------------------------------------------------------------------------


def test_a_redirect_is_not_delivered_and_not_followed(
    redirecting: str, elsewhere: Simulator
) -> None:
    with pytest.raises(webhook.WebhookRefused) as refused:
        webhook.post(redirecting, PAYLOAD, Secret("k"))
    message = str(refused.value)
    assert message == "not delivered: redirected (302) to 127.0.0.2/_sim/webhook"
    assert elsewhere.webhooks() == [] and elsewhere.requests_seen() == []


def test_a_closed_port_is_worth_another_try() -> None:
    with pytest.raises(RetryableApiError, match="ConnectionError"):
        webhook.post(f"http://127.0.0.1:{free_port()}/hook", PAYLOAD, Secret("k"))


# --- the outbox --------------------------------------------------------------------------


def test_backoff_doubles_to_an_hour_and_gives_up_after_a_day(outbox: webhook.Outbox) -> None:
    run_id, start = f"run-{uuid.uuid4().hex}", 1_000_000.0
    outbox.add(run_id, signed=True, now=start)
    # The first attempt is in flight: the sweep leaves it alone until its lease ends.
    assert run_id not in outbox.due(now=start + 10)
    now, waits = start, []
    while outbox.retry_later(run_id, "webhook POST: ConnectionError", signed=True, now=now) == (
        webhook.PENDING
    ):
        next_at = float(outbox.entry(run_id)["next_at"])
        waits.append(next_at - now)
        assert run_id not in outbox.due(now=next_at - 1)
        assert run_id in outbox.due(now=next_at)
        now = next_at
    assert 54 <= waits[0] <= 66 and 108 <= waits[1] <= 132
    assert max(waits) <= webhook.MAX_RETRY_SECONDS * 1.1 and waits[-1] >= 3000
    assert now - start >= webhook.GIVE_UP_SECONDS  # at least a day of trying
    entry = outbox.entry(run_id)
    assert entry["state"] == webhook.ABANDONED and int(entry["attempts"]) == len(waits) + 1
    assert run_id not in outbox.due(now=now + 10 * 24 * 3600)
    assert outbox.describe(run_id) == (
        f"abandoned after {len(waits) + 1} attempt(s) over a day,"
        " last error: webhook POST: ConnectionError"
    )


def test_one_attempt_at_a_time_and_none_once_settled(outbox: webhook.Outbox) -> None:
    run_id = f"run-{uuid.uuid4().hex}"
    outbox.add(run_id, signed=False)
    assert outbox.begin(run_id) and not outbox.begin(run_id)
    outbox.delivered(run_id, 204, signed=False)
    assert not outbox.begin(run_id)
    assert outbox.describe(run_id) == (
        "delivered (204) (unsigned: CXSWEEP_WEBHOOK_SECRET is not set)"
    )


# --- whole runs --------------------------------------------------------------------------


def _sweep(simulator: Simulator) -> str:
    list_id = f"list-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, [{"id": f"c{i}", "phone": f"+1650253{i:04d}"} for i in range(5)])
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "completed"
    return run_id


def _wait_for(outbox: webhook.Outbox, run_id: str, predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(outbox.entry(run_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"outbox entry of {run_id}: {outbox.entry(run_id)}")


def _status(run_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli.main(["status", run_id]) == 0
    return capsys.readouterr().out


@pytest.fixture
def receiver_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Settings are process-wide (the in-process worker reads them per task)."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.usefixtures("sweep_worker")
def test_a_webhook_waits_in_the_outbox_until_the_receiver_is_up(
    simulator: Simulator,
    outbox: webhook.Outbox,
    receiver_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    receiver_env.setenv("CXSWEEP_AGGREGATOR_URL", f"http://127.0.0.1:{port}/_sim/webhook")
    # The schedule's shape is the shipped one, its first step shortened so that the test
    # does not wait a minute (the outbox test above pins the real figures).
    receiver_env.setattr(webhook, "FIRST_RETRY_SECONDS", 0.2)
    get_settings.cache_clear()
    run_id = _sweep(simulator)

    _wait_for(outbox, run_id, lambda e: e.get("attempts") == "1")
    entry = outbox.entry(run_id)
    assert entry["state"] == webhook.PENDING and "ConnectionError" in entry["last_error"]
    shown = _status(run_id, capsys)
    assert "webhook: pending, next try at " in shown and "1 attempt(s)" in shown
    assert "last error: webhook POST: ConnectionError" in shown

    with Simulator(port=port) as receiver:
        time.sleep(0.3)
        from tasks.record import resend_webhooks

        resend_webhooks.delay()  # what beat does every minute
        _wait_for(outbox, run_id, lambda e: e.get("state") == webhook.DELIVERED)
        hooks = receiver.webhooks()
    assert [h["body"]["run_id"] for h in hooks] == [run_id]
    assert hooks[0]["headers"]["X-Cxsweep-Signature"].startswith("sha256=")
    assert "webhook: delivered (200)" in _status(run_id, capsys)
    assert run_id not in outbox.due(now=time.time() + 10 * 24 * 3600)


@pytest.mark.usefixtures("sweep_worker")
def test_a_redirecting_receiver_fails_the_delivery_and_says_where(
    simulator: Simulator,
    outbox: webhook.Outbox,
    redirecting: str,
    elsewhere: Simulator,
    receiver_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver_env.setenv("CXSWEEP_AGGREGATOR_URL", redirecting)
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="tasks.sweep"):
        run_id = _sweep(simulator)
        _wait_for(outbox, run_id, lambda e: e.get("state") == webhook.FAILED)
    assert outbox.entry(run_id)["attempts"] == "1"
    assert "not delivered: redirected (302) to 127.0.0.2/_sim/webhook" in _status(run_id, capsys)
    assert elsewhere.requests_seen() == []
    warnings = [r.getMessage() for r in caplog.records if run_id in r.getMessage()]
    assert len(warnings) == 1 and "redirected (302)" in warnings[0]


@pytest.mark.usefixtures("sweep_worker")
def test_an_unsigned_webhook_goes_out_with_one_warning(
    simulator: Simulator,
    outbox: webhook.Outbox,
    receiver_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver_env.setenv("CXSWEEP_WEBHOOK_SECRET", "")
    receiver_env.setattr(webhook, "_unsigned_warned", threading.Event())
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="cxsweep.runs.webhook"):
        runs = [_sweep(simulator) for _ in range(2)]
        for run_id in runs:
            _wait_for(outbox, run_id, lambda e: e.get("state") == webhook.DELIVERED)
    hooks = [h for h in simulator.webhooks() if h["body"]["run_id"] in runs]
    assert len(hooks) == 2
    assert not any("X-Cxsweep-Signature" in h["headers"] for h in hooks)
    unsigned = [r for r in caplog.records if "webhooks go out unsigned" in r.getMessage()]
    assert len(unsigned) == 1  # once per worker process, not once per run
    assert "(unsigned: CXSWEEP_WEBHOOK_SECRET is not set)" in _status(runs[0], capsys)
