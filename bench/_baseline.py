"""The original design's sweep, written plainly: the baseline of ``bench/sweep.py``.

    python bench/_baseline.py API_URL LIST_ID CLIENT_ID CLIENT_SECRET

One request at a time: a token, every page following ``nextPageUri``, each number judged
with phonenumbers as shipped (no cxsweep import, so no pattern cache), then a PATCH of
*every* valid contact in batches of 100 (as the original did, changed or not) and one
DELETE per reject. A 429 is honoured by sleeping its ``Retry-After`` and trying again.
Prints one JSON object: seconds per phase, CPU seconds of this process from the token
request on (imports excluded, as the bench counts cxsweep's workers from the run's start,
not their boot), counts, requests sent and 429s seen.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import phonenumbers
import requests
from phonenumbers import PhoneNumberFormat, PhoneNumberType

ALLOWED_REGIONS = frozenset({"US", "GB", "CA"})
BLOCKED_TYPES = frozenset({PhoneNumberType.VOIP, PhoneNumberType.TOLL_FREE})
DEFAULT_REGION = "US"
BATCH = 100


def sanitize(raw: object) -> str | None:
    """The number in E.164 when it may be dialled, else None (a reject)."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.region_code_for_number(number) not in ALLOWED_REGIONS:
        return None
    if phonenumbers.number_type(number) in BLOCKED_TYPES:
        return None
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


class Counter429:
    def __init__(self) -> None:
        self.sent = 0
        self.throttled = 0
        self.slept = 0.0


def send(
    session: requests.Session, counter: Counter429, method: str, url: str, **kw: Any
) -> requests.Response:
    while True:
        counter.sent += 1
        response = session.request(method, url, timeout=60, **kw)
        if response.status_code != 429:
            return response
        counter.throttled += 1
        wait = float(response.headers.get("Retry-After") or 1)
        counter.slept += wait
        time.sleep(wait)


def main(argv: list[str]) -> int:
    api_url, list_id, client_id, secret = argv
    session = requests.Session()
    counter = Counter429()
    started = time.perf_counter()
    cpu_started = time.process_time()
    token_answer = send(
        session,
        counter,
        "POST",
        f"{api_url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    token_answer.raise_for_status()
    session.headers["Authorization"] = f"Bearer {token_answer.json()['access_token']}"

    valid: list[tuple[str, str]] = []
    rejects: list[str] = []
    changed = 0
    sanitize_s = 0.0
    url: str | None = f"{api_url}/api/v2/campaigns/contactlists/{list_id}"
    while url:
        page = send(session, counter, "GET", url)
        page.raise_for_status()
        body = page.json()
        t0 = time.perf_counter()
        for contact in body["contacts"]:
            e164 = sanitize(contact.get("phone"))
            if e164 is None:
                rejects.append(contact["id"])
            else:
                valid.append((contact["id"], e164))
                changed += e164 != contact.get("phone")
        sanitize_s += time.perf_counter() - t0
        url = body.get("nextPageUri")
    read_done = time.perf_counter()

    patch_url = f"{api_url}/api/v2/campaigns/contactlists/{list_id}/contacts"
    for start in range(0, len(valid), BATCH):
        batch = [{"id": cid, "phone": phone} for cid, phone in valid[start : start + BATCH]]
        send(session, counter, "PATCH", patch_url, json={"contacts": batch}).raise_for_status()
    for cid in rejects:
        answer = send(session, counter, "DELETE", f"{api_url}/api/v2/campaigns/contacts/{cid}")
        if answer.status_code not in (204, 404):
            answer.raise_for_status()
    finished = time.perf_counter()
    print(
        json.dumps(
            {
                "wall": finished - started,
                "cpu": time.process_time() - cpu_started,
                "read_and_sanitize": read_done - started,
                "sanitize": sanitize_s,
                "write": finished - read_done,
                "valid": len(valid),
                "changed": changed,
                "rejects": len(rejects),
                "sent": counter.sent,
                "throttled": counter.throttled,
                "slept": counter.slept,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
