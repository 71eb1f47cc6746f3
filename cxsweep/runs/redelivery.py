"""What the broker holds for a run, read (never edited) by the watchdog.

On the Redis broker a message taken by a worker sits in kombu's ``unacked`` hash until
the task acknowledges it. When the worker dies with it, kombu delivers it again only
once it is older than the visibility timeout (an hour by default): until then the run
looks stalled but is not. RabbitMQ hands such messages back as soon as the dead
worker's connection closes, so there is nothing to wait for there.
"""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import redis

from cxsweep.settings import Settings

# kombu's Redis transport: delivery tag -> [message, exchange, routing key].
UNACKED_KEY = "unacked"


def _body_text(raw: bytes) -> str:
    """The task message body (its arguments) of one ``unacked`` entry, as text."""
    try:
        payload: dict[str, Any] = json.loads(raw)[0]
        body = payload.get("body", "")
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode("utf-8", "replace")
        return str(body)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return ""  # not a message of ours


class UnackedMessages:
    """The bodies of the messages taken by workers and not yet acknowledged (a snapshot
    of the Redis broker's ``unacked`` hash), to ask which runs they belong to."""

    def __init__(self, bodies: list[str]) -> None:
        self.bodies = bodies

    @classmethod
    def read(cls, client: redis.Redis) -> UnackedMessages:
        bodies = [
            _body_text(raw) for _, raw in cast(Any, client.hscan_iter(UNACKED_KEY, count=500))
        ]
        return cls(bodies)

    @classmethod
    def of_broker(cls, settings: Settings) -> UnackedMessages:
        """The configured broker's unacknowledged messages; none on RabbitMQ."""
        if settings.broker_is_amqp:
            return cls([])
        from cxsweep.redisconn import get_redis

        return cls.read(get_redis(settings.broker))

    def hold(self, run_id: str) -> bool:
        """Whether a message of run ``run_id`` (a task argument) is among them."""
        quoted = json.dumps(run_id)
        return any(quoted in body for body in self.bodies)
