"""Tests mirroring ``cxsweep/runs/redelivery.py``: the broker's unacknowledged messages,
read as the watchdog reads them. A real kombu Redis transport takes a message without
acknowledging it (what a worker does before it dies)."""

from __future__ import annotations

import uuid

import redis
from kombu import Connection

from cxsweep.runs.redelivery import UnackedMessages


def test_a_taken_message_holds_its_run_until_acknowledged(
    redis_url: str, redis_client: redis.Redis
) -> None:
    run_id = f"run-{uuid.uuid4().hex[:10]}"
    with Connection(redis_url) as conn:
        queue = conn.SimpleQueue(f"test-unacked-{uuid.uuid4().hex[:8]}")
        try:
            queue.put([run_id, 3], serializer="json")
            message = queue.get(timeout=5)
            held = UnackedMessages.read(redis_client)
            assert held.hold(run_id)
            assert not held.hold(run_id[:-1])
            message.ack()
            assert not UnackedMessages.read(redis_client).hold(run_id)
        finally:
            queue.clear()
            queue.close()


def test_hold_matches_a_quoted_argument_only() -> None:
    held = UnackedMessages(['[["20260101T000000Z-abcd1234", 0], {}, {}]', ""])
    assert held.hold("20260101T000000Z-abcd1234")
    assert not held.hold("20260101T000000Z-abcd")
