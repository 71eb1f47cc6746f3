"""The aggregator webhook: one signed POST per run, delivered through a durable outbox.

Each run's delivery is an entry in Redis (``Outbox``): its state, attempts, next
attempt time and last error. The first attempt goes out as soon as the run is recorded;
beat's ``resend_webhooks`` re-sends what is due, backing off from a minute to an hour,
and gives up (``abandoned``) only after a day. A receiver that redirects, refuses (4xx)
or shows a certificate that does not verify is misconfigured: the entry ends ``failed``
with the reason, for ``cxsweep status`` to show.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import redis
import requests

from cxsweep.errors import ApiError, RetryableApiError
from cxsweep.platforms.http import certificate_refused
from cxsweep.redisconn import text
from cxsweep.runs import keys
from cxsweep.settings import Secret

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
EVENT_COMPLETE = "campaign.sanitization.complete"
EVENT_HALTED = "campaign.sanitization.halted"

# Backoff between attempts: doubling from the first, capped; given up after a day.
FIRST_RETRY_SECONDS = 60.0
MAX_RETRY_SECONDS = 3600.0
GIVE_UP_SECONDS = 24 * 3600.0
# A dispatched attempt holds its entry this long: the next sweep does not send it again
# meanwhile, and an attempt lost with its worker comes due again after it.
LEASE_SECONDS = 300.0
# Entries (and what status shows of them) outlive the give-up time by days.
ENTRY_TTL = 7 * 24 * 3600
PENDING, DELIVERED, FAILED, ABANDONED = "pending", "delivered", "failed", "abandoned"

_unsigned_warned = threading.Event()


class WebhookRefused(ApiError):
    """The receiver will not take the webhook as configured (redirect, 4xx, TLS)."""


def build_payload(record: Mapping[str, Any]) -> dict[str, Any]:
    status = record.get("status")
    return {
        "event": EVENT_COMPLETE if status == "completed" else EVENT_HALTED,
        "list_id": record.get("list_id"),
        "run_id": record.get("run_id"),
        "timestamp": record.get("timestamp"),
        "metrics": dict(record),
    }


def signature(secret: Secret, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.reveal().encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _where(base: str, location: str) -> str:
    """host/path a redirect points to (its query may carry tokens: left out)."""
    parts = urlsplit(urljoin(base, location))
    return f"{parts.hostname or '?'}{parts.path or '/'}"


def post(
    url: str,
    payload: Mapping[str, Any],
    secret: Secret,
    session: requests.Session | None = None,
    insecure_hosts: frozenset[str] = frozenset(),
) -> int:
    """POST the payload once; the status code when the receiver took it.

    ``RetryableApiError``: try again later (no answer, 5xx, 429). ``WebhookRefused``:
    the receiver redirected (never followed: a redirect turns the POST into a GET
    without the body), refused it, or its certificate did not verify.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Cxsweep-Run": str(payload.get("run_id"))}
    if secret:
        timestamp = str(int(time.time()))
        headers["X-Cxsweep-Timestamp"] = timestamp
        headers["X-Cxsweep-Signature"] = signature(secret, timestamp, body)
    elif not _unsigned_warned.is_set():
        _unsigned_warned.set()
        log.warning(
            "CXSWEEP_WEBHOOK_SECRET is not set: webhooks go out unsigned, and the receiver"
            " cannot tell them from forgeries"
        )
    sender = session or requests
    try:
        response = sender.post(
            url,
            data=body,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            allow_redirects=False,
            verify=(urlsplit(url).hostname or "").lower() not in insecure_hosts,
        )
    except requests.exceptions.SSLError as exc:
        if certificate_refused(exc):
            message = "webhook POST: the receiver's TLS certificate did not verify"
            raise WebhookRefused(message) from None
        raise RetryableApiError("webhook POST: SSLError") from None
    except requests.RequestException as exc:
        raise RetryableApiError(f"webhook POST: {type(exc).__name__}") from None
    code = response.status_code
    if code == 429 or code >= 500:
        raise RetryableApiError(f"webhook POST: {code}", status=code)
    if 300 <= code < 400:
        where = _where(url, response.headers.get("Location", ""))
        raise WebhookRefused(f"not delivered: redirected ({code}) to {where}", status=code)
    if code >= 400:
        raise WebhookRefused(f"webhook POST: refused with {code}", status=code)
    return code


class Outbox:
    """Each run's webhook delivery, kept in Redis until it is delivered or given up."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _key(self, run_id: str) -> str:
        return keys.webhook_entry(run_id)

    def add(self, run_id: str, *, signed: bool, now: float | None = None) -> None:
        """A new delivery; its first attempt is sent right away by the caller."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline()
        pipe.hset(
            self._key(run_id),
            mapping={
                "state": PENDING,
                "attempts": 0,
                "created_at": now,
                "next_at": now,
                "signed": int(signed),
            },
        )
        pipe.expire(self._key(run_id), ENTRY_TTL)
        # Leased to that first attempt: the sweep takes over if it is lost.
        pipe.zadd(keys.WEBHOOK_OUTBOX, {run_id: now + LEASE_SECONDS})
        pipe.execute()

    def due(self, now: float | None = None, limit: int = 200) -> list[str]:
        """Runs whose next attempt is due, each leased to the attempt now dispatched."""
        now = time.time() if now is None else now
        found = self.redis.zrangebyscore(keys.WEBHOOK_OUTBOX, "-inf", now, 0, limit)
        raw = cast(list[bytes], found)
        due = [text(r) for r in raw]
        if due:
            self.redis.zadd(keys.WEBHOOK_OUTBOX, dict.fromkeys(due, now + LEASE_SECONDS), xx=True)
        return due

    def entry(self, run_id: str) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self._key(run_id)).items()}

    def begin(self, run_id: str) -> bool:
        """Whether the caller may make an attempt now: the entry is pending and no other
        attempt of it is under way."""
        lock = keys.webhook_sending(run_id)
        if not self.redis.set(lock, 1, nx=True, ex=60):
            return False
        if self.entry(run_id).get("state") != PENDING:
            self.redis.delete(lock)
            return False
        return True

    def _end_attempt(self, run_id: str, fields: Mapping[str, Any], *, keep: float | None) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self._key(run_id), mapping={k: v for k, v in fields.items()})
        pipe.hincrby(self._key(run_id), "attempts", 1)
        if keep is None:
            pipe.zrem(keys.WEBHOOK_OUTBOX, run_id)
        else:
            pipe.zadd(keys.WEBHOOK_OUTBOX, {run_id: keep})
        pipe.delete(keys.webhook_sending(run_id))
        pipe.execute()

    def delivered(self, run_id: str, code: int, *, signed: bool) -> None:
        fields = {"state": DELIVERED, "code": code, "signed": int(signed), "at": time.time()}
        self._end_attempt(run_id, fields, keep=None)

    def failed(self, run_id: str, why: str, *, signed: bool) -> None:
        """Not delivered, and trying again would not help (the receiver's setup)."""
        fields = {"state": FAILED, "last_error": why[:300], "signed": int(signed)}
        self._end_attempt(run_id, fields, keep=None)

    def retry_later(self, run_id: str, why: str, *, signed: bool, now: float | None = None) -> str:
        """An attempt that may pass later: the next is scheduled, or, a day after the
        run was recorded, the delivery is abandoned. Returns the new state."""
        now = time.time() if now is None else now
        entry = self.entry(run_id)
        attempts = int(entry.get("attempts") or 0) + 1
        created = float(entry.get("created_at") or now)
        fields: dict[str, Any] = {"last_error": why[:300], "signed": int(signed)}
        if now - created >= GIVE_UP_SECONDS:
            fields["state"] = ABANDONED
            self._end_attempt(run_id, fields, keep=None)
            return ABANDONED
        wait = min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), MAX_RETRY_SECONDS)
        wait *= random.uniform(0.9, 1.1)  # a fleet's failed deliveries do not retry in step
        fields["next_at"] = now + wait
        self._end_attempt(run_id, fields, keep=now + wait)
        return PENDING

    def describe(self, run_id: str) -> str | None:
        """One line for ``cxsweep status``; None when the run has no webhook."""
        entry = self.entry(run_id)
        if not entry:
            return None
        attempts = int(entry.get("attempts") or 0)
        state = entry.get("state", "?")
        if state == DELIVERED:
            line = f"delivered ({entry.get('code')})"
        elif state == PENDING:
            when = time.strftime("%H:%M:%SZ", time.gmtime(float(entry.get("next_at") or 0)))
            line = f"pending, next try at {when}, {attempts} attempt(s)"
        elif state == ABANDONED:
            line = f"abandoned after {attempts} attempt(s) over a day"
        else:
            line = f"failed after {attempts} attempt(s)"
        if state != DELIVERED and entry.get("last_error"):
            line += f", last error: {entry['last_error']}"
        if entry.get("signed") == "0":
            line += " (unsigned: CXSWEEP_WEBHOOK_SECRET is not set)"
        return line
