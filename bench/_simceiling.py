"""How many requests a second the simulator answers on its own, with nothing else running.

    python bench/_simceiling.py API_URL LIST_ID SECONDS PROCESSES THREADS

DELETEs of unknown ids (the cheapest call that goes through the whole request path:
route, auth, rate bucket, stats, a 404) from PROCESSES x THREADS clients, and page reads
(500 contacts) one at a time. Prints one JSON object.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
import time

import requests


def _token(api_url: str) -> str:
    answer = requests.post(
        f"{api_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def _hammer(
    api_url: str, token: str, seconds: float, threads: int, out: multiprocessing.Queue[int]
) -> None:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def one(slot: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        n = 0
        while time.monotonic() < stop:
            session.delete(f"{api_url}/api/v2/campaigns/contacts/nobody-{slot}-{n}", timeout=30)
            n += 1
        counts[slot] = n

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(sum(counts))


def main(argv: list[str]) -> int:
    api_url, list_id, seconds_s, procs_s, threads_s = argv
    seconds, procs, threads = float(seconds_s), int(procs_s), int(threads_s)
    token = _token(api_url)
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    started = time.monotonic()
    children = [
        multiprocessing.Process(target=_hammer, args=(api_url, token, seconds, threads, queue))
        for _ in range(procs)
    ]
    for child in children:
        child.start()
    total = sum(queue.get() for _ in children)
    for child in children:
        child.join()
    delete_rate = total / (time.monotonic() - started)

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    url: str | None = f"{api_url}/api/v2/campaigns/contactlists/{list_id}"
    pages, t0 = 0, time.monotonic()
    while url and time.monotonic() - t0 < seconds:
        body = session.get(url, timeout=30).json()
        pages += 1
        url = body.get("nextPageUri")
    page_ms = (time.monotonic() - t0) / max(1, pages) * 1000
    print(json.dumps({"delete_per_s": delete_rate, "read_page_ms": page_ms, "pages": pages}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
