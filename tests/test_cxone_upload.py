"""CXone uploads (cxsweep/platforms/cxone_upload.py): status-only jobs followed by retries,
read back before they count, with the expiration date the schema requires."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
import redis

from cxsweep.platforms.base import Change
from cxsweep.platforms.cxone import JobPending
from tests._cxone import backend, new_list_id


def test_upload_is_followed_by_retries_not_repeated(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=4, seed=4)
    records = simulator.get_call_list(list_id)
    simulator.fail_records(upload={records[1]["ExternalId"]: "InvalidRecord"})
    changes = [
        Change(r["ExternalId"], {"MobileNumber": f"+1650253000{i}"}, r)
        for i, r in enumerate(records[:2])
    ]
    client = backend(redis_client)
    with pytest.raises(JobPending) as pending:
        client.update_contacts(list_id, changes)
    assert pending.value.status is None and pending.value.retry_after == pytest.approx(0.2)
    with pytest.raises(JobPending):
        client.update_contacts(list_id, changes)  # polls the same job
    time.sleep(0.4)
    # The job says only that it is complete: the list is read back, and the row the
    # platform dropped is a failure, with what the list holds instead.
    outcome = client.update_contacts(list_id, changes)
    assert outcome.done == [records[0]["ExternalId"]]
    assert outcome.failed == {
        records[1]["ExternalId"]: "upload job 1 ended but the list holds MobileNumber="
        f"{records[1]['MobileNumber']!r}, not '+16502530001'"
    }
    stats = simulator.stats()
    assert stats["jobs_submitted"] == 1 and stats["requests"]["upload"] == 1
    assert stats["requests"]["cxone_read"] == 1  # the read-back
    # The list has no expiration date of its own: the setting's default, 30 days on.
    expected_date = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    assert simulator.jobs()[0]["expirationDate"] == expected_date
    after = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    assert after[records[0]["ExternalId"]] == {**records[0], "MobileNumber": "+16502530000"}
    assert after[records[1]["ExternalId"]] == records[1]


def test_upload_carries_the_lists_own_expiration_date(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=2, seed=5, expiration="2099-06-30T00:00:00Z")
    client = backend(redis_client)
    record = client.read_page(list_id, None).contacts[0]
    with pytest.raises(JobPending):
        client.update_contacts(list_id, [Change(record["ExternalId"], {"WorkNumber": ""}, record)])
    assert simulator.jobs()[0]["expirationDate"] == "2099-06-30T00:00:00Z"
