"""The aggregator webhook: one signed POST per run, retried by the Celery task."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from cxsweep.errors import ApiError, RetryableApiError
from cxsweep.settings import Secret

TIMEOUT_SECONDS = 15.0
EVENT_COMPLETE = "campaign.sanitization.complete"
EVENT_HALTED = "campaign.sanitization.halted"


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


def post(
    url: str,
    payload: Mapping[str, Any],
    secret: Secret,
    session: requests.Session | None = None,
    insecure_hosts: frozenset[str] = frozenset(),
) -> int:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Cxsweep-Run": str(payload.get("run_id"))}
    if secret:
        timestamp = str(int(time.time()))
        headers["X-Cxsweep-Timestamp"] = timestamp
        headers["X-Cxsweep-Signature"] = signature(secret, timestamp, body)
    sender = session or requests
    try:
        response = sender.post(
            url,
            data=body,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            verify=(urlsplit(url).hostname or "").lower() not in insecure_hosts,
        )
    except requests.RequestException as exc:
        raise RetryableApiError(f"webhook POST: {type(exc).__name__}") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableApiError(
            f"webhook POST: {response.status_code}", status=response.status_code
        )
    if response.status_code >= 300:
        raise ApiError(f"webhook POST: refused with {response.status_code}")
    return response.status_code
