"""Secrets and PII: what a full run leaves in logs, on the broker and in the results.

The client secret, every access token the simulator issued and the webhook secret must
appear in no log line, task message or task result; phone numbers in log lines are
masked. Checked twice: with the in-process worker (caplog at DEBUG for every logger,
every published message) and with a real worker process at DEBUG on a private Redis
(its whole output, every key of that Redis but the designed token cache).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery.signals import before_task_publish

from console import launch
from tests._stack import CLIENT_SECRET as STACK_SECRET
from tests._stack import Stack, finish, make_stack, wait_until
from tests.conftest import CLIENT_SECRET

WEBHOOK_SECRET = "test-webhook-secret"  # conftest's CXSWEEP_WEBHOOK_SECRET
E164 = re.compile(r"\+[1-9]\d{9,14}")


def issued_tokens(sim: Any) -> set[str]:
    """Every bearer token the simulator granted and still remembers (none revoked here)."""
    with sim._lock:
        tokens = set(sim._tokens)
    assert len(tokens) >= sim.stats()["token_grants"] >= 1
    return tokens


def full_numbers(contacts: list[dict[str, Any]]) -> set[str]:
    """The numbers of a list as written (if long enough to be one) and as E.164."""
    numbers: set[str] = set()
    for contact in contacts:
        phone = contact.get("phone")
        if isinstance(phone, str) and sum(ch.isdigit() for ch in phone) >= 10:
            numbers.add(phone.strip())
            numbers.update(E164.findall(phone))
    return numbers


def leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(secret[:6] + "..." for secret in secrets if secret and secret in text)


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """Every task message this process publishes: headers and body."""
    seen: list[dict[str, Any]] = []

    def capture(body: Any = None, headers: Any = None, **_: Any) -> None:
        seen.append({"headers": dict(headers or {}), "body": body})

    before_task_publish.connect(capture, weak=False)
    yield seen
    before_task_publish.disconnect(capture)


@pytest.mark.usefixtures("sweep_worker")
def test_a_full_run_logs_no_secret_token_or_number(
    simulator: Any,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    published: list[dict[str, Any]],
) -> None:
    list_id = f"secrets-{uuid.uuid4().hex[:8]}"
    simulator.configure(page_size=100)
    simulator.put_list(list_id, count=400, seed=31)
    original = simulator.get_list(list_id)
    # A 401 mid-run: the token is refreshed, so there are two to look for.
    simulator.add_faults(
        [{"method": "PATCH", "path": "/contacts$", "action": 401, "after": 1, "times": 1}]
    )
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logging.getLogger(name).setLevel(logging.DEBUG)

    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    record = launch.wait_for_run(settings, run_id, timeout=120, quiet=True)
    assert record["status"] == "completed"

    secrets = {CLIENT_SECRET, WEBHOOK_SECRET} | issued_tokens(simulator)
    assert simulator.stats()["token_grants"] >= 2
    assert caplog.records, "nothing was logged: the capture proves nothing"
    assert any(r.name.startswith("cxsweep") for r in caplog.records)
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.__dict__!r}" for r in caplog.records
    )
    assert leaks(logged, secrets) == []

    numbers = full_numbers(original) | full_numbers(simulator.get_list(list_id))
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert sorted(n for n in numbers if n in messages) == []

    # What went over the broker: every message this process and the worker published.
    assert published, "no task message seen"
    wire = json.dumps(published, default=repr)
    assert leaks(wire, secrets) == []
    # And every result stored for a task of this run.
    ids = [m["headers"].get("id") for m in published if m["headers"].get("id")]
    results = [
        cast(bytes | None, redis_client.get(f"celery-task-meta-{task_id}")) for task_id in ids
    ]
    stored = b"\n".join(r for r in results if r)
    assert stored, "no task result stored"
    assert leaks(stored.decode(errors="replace"), secrets) == []


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from make_stack(tmp_path, page_size=100)


def test_a_worker_process_at_debug_leaks_nothing(stack: Stack) -> None:
    """A real worker's whole output at DEBUG, and every Redis key but the token cache."""
    webhook_secret = "stack-webhook-secret-77"
    stack.extra_env.update(
        {
            "CXSWEEP_WEBHOOK_SECRET": webhook_secret,
            "CXSWEEP_AGGREGATOR_URL": f"{stack.sim.url}/_sim/webhook",
        }
    )
    stack.sim.put_list("pii", count=400, seed=32)
    original = stack.sim.get_list("pii")
    stack.sim.add_faults(
        [{"method": "DELETE", "path": "/contacts/", "action": 401, "after": 2, "times": 1}]
    )
    stack.start_worker("a", loglevel="DEBUG")
    code, record, err = finish(stack.run_cli("pii", "--timeout", "60"), timeout=90)
    assert code == 0 and record is not None and record["status"] == "completed", err
    run_id = record["run_id"]
    assert len(stack.audit_lines(run_id)) == 1
    # The webhook went out signed: the secret was used, so its absence below means something.
    assert wait_until(
        lambda: any(h["body"].get("run_id") == run_id for h in stack.sim.webhooks()), timeout=15
    )

    secrets = {STACK_SECRET, webhook_secret} | issued_tokens(stack.sim)
    output = stack.worker_log("a") + err + json.dumps(record)
    assert "DEBUG" in output, "the worker did not log at DEBUG"
    assert leaks(output, secrets) == []
    numbers = full_numbers(original) | full_numbers(stack.sim.get_list("pii"))
    shown = sorted(n for n in numbers if n in stack.worker_log("a") + err)
    assert shown == [], f"{len(shown)} phone numbers in full in the logs, e.g. {shown[:3]}"

    # Everything in the private Redis: queues, results, run state, locks. Only the
    # shared token cache (cxsweep:token:*) is meant to hold a token.
    client = stack.redis
    found: dict[str, list[str]] = {}
    for key in client.scan_iter(count=1000):
        name = key.decode()
        if name.startswith("cxsweep:token:"):
            continue
        kind = cast(bytes, client.type(key)).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind in ("set",):
            values = list(client.smembers(key))
        elif kind == "zset":
            scored = cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))
            values = [m for m, _ in scored]
        else:
            values = []
        text = b"\n".join(v if isinstance(v, bytes) else str(v).encode() for v in values)
        bad = leaks(text.decode(errors="replace"), secrets)
        if bad:
            found[name] = bad
    assert found == {}
    assert any(k.startswith(b"celery-task-meta-") for k in client.scan_iter("celery-task-meta-*"))


def test_masking_leaves_task_ids_and_durations_alone() -> None:
    from cxsweep.logs import mask_numbers

    line = (
        "Task tasks.sweep.fetch_page[a4389e76-1234-4567-8901-e86e8ed1a574] succeeded in"
        " 0.0216053s: {'ok': True}"
    )
    assert mask_numbers(line) == line
    assert mask_numbers("calling +1 (650) 253-0000 now") == "calling +1650***0000 now"
