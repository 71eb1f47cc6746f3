"""CXone uploads (cxsweep/platforms/cxone_upload.py): status-only jobs followed by retries,
read back before they count, with the expiration date the schema requires."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
import redis

from cxsweep.errors import ApiError, RetryableApiError
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
    # Long enough that a loaded machine still polls the job before it ends.
    simulator.configure(job_delay=2.0)
    client = backend(redis_client)
    with pytest.raises(JobPending) as pending:
        client.update_contacts(list_id, changes)
    assert pending.value.status is None and pending.value.retry_after == pytest.approx(0.2)
    with pytest.raises(JobPending):
        client.update_contacts(list_id, changes)  # polls the same job
    time.sleep(2.1)
    # The job says only that it is complete: the list is read back, and the row the
    # platform dropped is a failure, with what the list holds instead.
    outcome = client.update_contacts(list_id, changes)
    assert outcome.done == [records[0]["ExternalId"]]
    job = simulator.jobs()[-1]["jobId"]  # the simulator numbers jobs across the session
    assert outcome.failed == {
        records[1]["ExternalId"]: f"upload job {job} ended but the list holds MobileNumber="
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


def test_an_upload_whose_answer_was_lost_is_found_among_the_jobs(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=6, seed=4)
    records = simulator.get_call_list(list_id)
    # Every phone column rewritten: a row left holding a bad number is refused by the job.
    changes = [
        Change(
            r["ExternalId"],
            {"PhoneNumber": f"+1650253001{i}", "MobileNumber": "", "WorkNumber": ""},
            r,
        )
        for i, r in enumerate(records[:3])
    ]
    # The upload is served (its job made) and the connection drops before the answer.
    simulator.add_faults(
        [{"method": "POST", "path": "/upload$", "action": "lose_answer", "times": 1}]
    )
    simulator.configure(job_delay=2.0)  # still running when the retry polls it
    client = backend(redis_client)
    with pytest.raises(RetryableApiError):
        client.update_contacts(list_id, changes)
    assert simulator.stats()["jobs_submitted"] == 1
    lost = str(simulator.jobs()[-1]["jobId"])
    # The retry finds that job on the list instead of uploading again, and follows it.
    with pytest.raises(JobPending) as pending:
        client.update_contacts(list_id, changes)
    assert pending.value.job_id == lost
    time.sleep(2.1)
    outcome = client.update_contacts(list_id, changes)
    assert not outcome.failed, outcome.failed
    assert sorted(outcome.done) == sorted(c.contact_id for c in changes)
    stats = simulator.stats()
    assert stats["jobs_submitted"] == 1 and stats["requests"]["jobs"] == 1
    assert all(times == 1 for times in stats["uploaded"].values())


def test_a_lost_upload_is_sent_again_when_its_job_is_in_doubt(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=6, seed=4)
    records = simulator.get_call_list(list_id)
    mine = [Change(records[0]["ExternalId"], {"WorkNumber": ""}, records[0])]
    theirs = [Change(records[1]["ExternalId"], {"WorkNumber": ""}, records[1])]
    simulator.add_faults(
        [{"method": "POST", "path": "/upload$", "action": "lose_answer", "times": 1}]
    )
    client = backend(redis_client)
    with pytest.raises(RetryableApiError):
        client.update_contacts(list_id, mine)
    # Someone else uploads to the list meanwhile: two unknown jobs near the lost one,
    # and nothing tells which is ours. The rows go again (an overwrite is harmless).
    with pytest.raises(JobPending):
        backend(redis_client).update_contacts(list_id, theirs)
    lost, other = (str(job["jobId"]) for job in simulator.jobs()[-2:])
    redis_client.srem(client._keys.known_jobs(list_id), other)  # as if not cxsweep's
    with pytest.raises(JobPending) as pending:
        client.update_contacts(list_id, mine)
    assert pending.value.job_id not in (lost, other)
    assert simulator.stats()["jobs_submitted"] == 3


def test_only_an_upload_that_may_have_landed_is_looked_for(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=4, seed=4)
    records = simulator.get_call_list(list_id)
    client = backend(redis_client)
    simulator.configure(job_delay=2.0)
    # A 400 answer: the platform refused the file, there is no job to look for.
    refused = [Change(records[0]["ExternalId"], {"WorkNumber": ""}, records[0])]
    simulator.add_faults([{"method": "POST", "path": "/upload$", "action": 400, "times": 1}])
    with pytest.raises(ApiError):
        client.update_contacts(list_id, refused)
    with pytest.raises(JobPending):
        client.update_contacts(list_id, refused)
    assert simulator.stats()["requests"].get("jobs", 0) == 0
    # A 503 may come from a gateway after the platform took the file: its jobs are asked.
    unsure = [Change(records[1]["ExternalId"], {"WorkNumber": ""}, records[1])]
    simulator.add_faults([{"method": "POST", "path": "/upload$", "action": 503, "times": 1}])
    with pytest.raises(RetryableApiError):
        client.update_contacts(list_id, unsure)
    with pytest.raises(JobPending):
        client.update_contacts(list_id, unsure)
    stats = simulator.stats()
    assert stats["requests"]["jobs"] == 1 and stats["jobs_submitted"] == 2
