"""The CXone backend: client-level behaviour, and whole sweeps through a real worker.

Settings are process-wide: each test points them at the session simulator through the
environment and clears ``get_settings``' cache before and after, so the in-process worker
(which reads ``get_settings()`` per task) sweeps through the CXone backend too.
"""

from __future__ import annotations

import datetime
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from console import cli, launch
from cxsweep.errors import ApiError, CredentialsRefused, CxsweepError, MalformedResponse
from cxsweep.phone.numbers import Sanitizer
from cxsweep.phone.policy import settings_directive
from cxsweep.platforms.base import Change
from cxsweep.platforms.cxone import CxoneBackend, JobPending, jwt_claims
from cxsweep.platforms.factory import make_backend
from cxsweep.runs.store import RunStore
from cxsweep.settings import get_settings

PHONES = ("PhoneNumber", "MobileNumber", "WorkNumber")
DNC_GROUP = "7001"


@pytest.fixture
def cxone(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """CXSWEEP_BACKEND=cxone against the session simulator, with a fresh access key.

    A new key per test gives the test its own Redis namespace (token, tenant, API base).
    """
    key_id, key_secret = f"key-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    simulator.configure(access_keys={key_id: key_secret}, job_delay=0.3)
    env = {
        "CXSWEEP_BACKEND": "cxone",
        "CXSWEEP_CXONE_AUTH_URL": simulator.url,
        "CXSWEEP_CXONE_ACCESS_KEY_ID": key_id,
        "CXSWEEP_CXONE_ACCESS_KEY_SECRET": key_secret,
        "CXSWEEP_CXONE_PHONE_COLUMNS": ",".join(PHONES),
        "CXSWEEP_CXONE_UPLOAD_BATCH": "60",
        "CXSWEEP_CXONE_REMOVE_BATCH": "15",
        "CXSWEEP_CXONE_JOB_POLL_SECONDS": "0.2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    monkeypatch.undo()
    get_settings.cache_clear()


def new_list_id() -> str:
    return str(random.randrange(10**6, 10**7))


def backend(redis_client: redis.Redis) -> CxoneBackend:
    get_settings.cache_clear()
    made = make_backend(get_settings(), redis_client)
    assert isinstance(made, CxoneBackend)
    return made


def expected(records: list[dict[str, Any]]) -> tuple[dict[str, dict[str, str]], set[str]]:
    """What the pipeline must do: id -> new phone values for changed records, removed ids."""
    sanitizer = Sanitizer(settings_directive(get_settings()))
    changes: dict[str, dict[str, str]] = {}
    removed: set[str] = set()
    for record in records:
        present = [c for c in PHONES if (record.get(c) or "").strip()] or [PHONES[0]]
        verdicts = {c: sanitizer.check(record.get(c)) for c in present}
        if not any(v.kept for v in verdicts.values()):
            removed.add(record["ExternalId"])
            continue
        after = {
            c: ("" if not v.kept else str(v.e164))
            for c, v in verdicts.items()
            if not v.kept or v.e164 != record[c]
        }
        if after:
            changes[record["ExternalId"]] = after
    return changes, removed


# --- client level ------------------------------------------------------------------------


def test_password_grant_discovery_and_cached_api_base(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CXSWEEP_API_URL")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=5, seed=1)
    first = backend(redis_client)
    first.check_credentials()
    assert first.api_base() == f"{simulator.url}/inContactAPI/services/v31.0"
    assert first.tenant_id() == simulator.config.tenant_id
    lists = {item["id"]: item for item in first.iter_lists()}
    assert lists[list_id]["name"] == f"Calling list {list_id}"
    # A second backend (another task, another worker) reuses token, tenant and base.
    second = backend(redis_client)
    page = second.read_page(list_id, None)
    assert page.total == 5 and len(page.contacts) == 5
    stats = simulator.stats()
    assert stats["requests"]["discovery"] == 1
    assert stats["password_grants"] == 1 and stats["token_grants"] == 1


def test_id_token_claims_hold_the_tenant(cxone: dict[str, str], simulator: Any) -> None:
    import requests

    response = requests.post(
        f"{simulator.url}/auth/token",
        data={
            "grant_type": "password",
            "username": cxone["CXSWEEP_CXONE_ACCESS_KEY_ID"],
            "password": cxone["CXSWEEP_CXONE_ACCESS_KEY_SECRET"],
        },
        auth=("test-client", "test-secret-value-9f2"),
        timeout=5,
    )
    body = response.json()
    assert response.status_code == 200 and body["refresh_token"]
    assert jwt_claims(body["id_token"])["tenantId"] == simulator.config.tenant_id
    # Without client credentials (Basic or client_secret_post) the grant is refused.
    refused = requests.post(
        f"{simulator.url}/auth/token", data={"grant_type": "password"}, timeout=5
    )
    assert refused.status_code == 401


def test_client_secret_post(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_CLIENT_AUTH", "client_secret_post")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=3, seed=1)
    assert len(backend(redis_client).read_page(list_id, None).contacts) == 3
    assert simulator.stats()["password_grants"] == 1


def test_access_key_endpoint_needs_no_app_and_discovers_the_api(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_AUTH", "access-key")
    monkeypatch.delenv("CXSWEEP_CLIENT_ID")
    monkeypatch.delenv("CXSWEEP_CLIENT_SECRET")
    monkeypatch.delenv("CXSWEEP_API_URL")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=3, seed=1)
    client = backend(redis_client)
    assert client.api_base() == f"{simulator.url}/inContactAPI/services/v31.0"
    assert len(client.read_page(list_id, None).contacts) == 3
    stats = simulator.stats()
    assert stats["access_key_grants"] == 1 and stats["password_grants"] == 0
    assert stats["requests"]["discovery"] == 1

    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", "not-the-secret")
    with pytest.raises(CredentialsRefused, match="CXSWEEP_CXONE_ACCESS_KEY_ID") as refused:
        backend(redis_client).check_credentials()
    assert "not-the-secret" not in str(refused.value)


def test_refresh_token_then_password_grant_fallback(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=3, seed=2)
    simulator.configure(token_lifetime=2)
    client = backend(redis_client)
    client.read_page(list_id, None)
    time.sleep(1.1)  # past the refresh time (half of a 2 s token)
    client.read_page(list_id, None)
    stats = simulator.stats()
    assert (stats["password_grants"], stats["refresh_grants"]) == (1, 1)

    simulator.revoke_tokens()  # a 401: one refresh for the fleet, then the call again
    client.read_page(list_id, None)
    stats = simulator.stats()
    assert (stats["password_grants"], stats["refresh_grants"]) == (1, 2)

    simulator.revoke_tokens()
    simulator.revoke_refresh_tokens()  # the refresh is refused: a new password grant
    client.read_page(list_id, None)
    stats = simulator.stats()
    assert (stats["password_grants"], stats["refresh_grants"]) == (2, 2)


def test_wrong_access_key_is_refused(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", "not-the-secret")
    with pytest.raises(CredentialsRefused) as refused:
        backend(redis_client).check_credentials()
    assert "CXSWEEP_CXONE_ACCESS_KEY_ID" in str(refused.value)
    assert "not-the-secret" not in str(refused.value)


def test_remove_prospects_partial_results(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=6, seed=3)
    ids = [r["ExternalId"] for r in simulator.get_call_list(list_id)]
    simulator.fail_records(remove={ids[1]: "ProspectLocked"})
    client = backend(redis_client)
    outcome = client.remove_contacts(list_id, [ids[0], ids[1], "no-such-record"])
    assert outcome.done == [ids[0]]
    assert outcome.missing == ["no-such-record"]
    assert outcome.failed == {ids[1]: "removeProspects: ProspectLocked"}
    assert [r["ExternalId"] for r in simulator.get_call_list(list_id)] == ids[1:]

    # An answer naming a record in neither list is settled by reading the list back.
    simulator.fail_records(remove={ids[2]: ""})
    reads = simulator.stats()["requests"]["cxone_read"]
    outcome = client.remove_contacts(list_id, [ids[2], ids[3]])
    assert outcome.done == [ids[3]]
    assert outcome.failed == {
        ids[2]: "removeProspects gave no result and the record is still in the list"
    }
    assert simulator.stats()["requests"]["cxone_read"] == reads + 1


def test_number_typed_fields_go_as_numbers(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    from cxsweep.platforms.cxone import as_number

    assert as_number("12345") == 12345
    assert as_number("0123") == "0123"  # a number would lose the zero
    assert as_number("cx-1") == "cx-1" and as_number("١٢") == "١٢"
    list_id = new_list_id()
    simulator.put_call_list(
        list_id, [{"ExternalId": "501", "PhoneNumber": "x", "MobileNumber": "", "WorkNumber": ""}]
    )
    outcome = backend(redis_client).remove_contacts(list_id, ["501"])
    assert outcome.done == ["501"] and simulator.get_call_list(list_id) == []


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


def test_a_list_downloads_once_and_pages_from_the_spool(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cxsweep.platforms.cxone import SPOOL_DIR

    monkeypatch.setenv("CXSWEEP_CXONE_PAGE_SIZE", "40")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=130, seed=7)
    original = [r["ExternalId"] for r in simulator.get_call_list(list_id)]
    client = backend(redis_client)
    page = client.read_page(list_id, None)
    assert page.total == 130
    seen = [r["ExternalId"] for r in page.contacts]
    cursors = []
    while page.next_cursor:
        cursors.append(page.next_cursor)
        page = client.read_page(list_id, page.next_cursor)
        seen += [r["ExternalId"] for r in page.contacts]
    assert seen == original and len(cursors) == 3
    assert simulator.stats()["requests"]["cxone_read"] == 1
    # The last page removed the spool. A cursor whose spool is gone (another host, say)
    # downloads again and goes on where it was.
    assert not (SPOOL_DIR / f"{cursors[1].split(':')[0]}.jsonl").exists()
    resumed = client.read_page(list_id, cursors[1])
    assert [r["ExternalId"] for r in resumed.contacts] == original[80:120]
    assert simulator.stats()["requests"]["cxone_read"] == 2
    assert resumed.next_cursor and not client.read_page(list_id, resumed.next_cursor).next_cursor
    assert not (SPOOL_DIR / f"{resumed.next_cursor.split(':')[0]}.jsonl").exists()
    with pytest.raises(ApiError, match="cursor"):
        client.read_page(list_id, "../../etc/passwd:0:0")


def test_warns_of_a_running_or_unscrubbed_skill(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_DNC_GROUP_ID", DNC_GROUP)
    simulator.add_dnc_group(DNC_GROUP, scrubbed_skills=(4001,))
    quiet, loud = new_list_id(), new_list_id()
    simulator.put_call_list(quiet, count=2, seed=1, skill_id=4001)
    simulator.put_call_list(loud, count=2, seed=1, skill_id=4002, name="loud")
    simulator.set_skill_running(4002)
    client = backend(redis_client)
    with caplog.at_level("WARNING", logger="cxsweep.platforms.cxone"):
        client.read_page(quiet, None)
        assert not caplog.records
        client.read_page(loud, None)
    messages = [r.getMessage() for r in caplog.records]
    assert any("skill 4002 is running" in m for m in messages), messages
    assert any("4002 not scrubbed against DNC group" in m for m in messages), messages


def test_scheduled_sweeps_skip_inactive_lists(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    active, inactive = new_list_id(), new_list_id()
    simulator.put_call_list(active, count=1, seed=1)
    simulator.put_call_list(inactive, count=1, seed=1, status="Inactive", name="old")
    assert {item["id"] for item in backend(redis_client).iter_lists()} == {active}
    monkeypatch.setenv("CXSWEEP_CXONE_INCLUDE_INACTIVE", "true")
    assert {item["id"] for item in backend(redis_client).iter_lists()} == {active, inactive}


def test_oversized_record_and_short_answer_are_refused(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(
        list_id,
        [{"ExternalId": "1", "PhoneNumber": "+16502530000", "Notes": "x" * 2000}],
    )
    with pytest.raises(MalformedResponse, match="CXone allows 512"):
        backend(redis_client).read_page(list_id, None)
    simulator.put_call_list(list_id, count=50, seed=8)
    simulator.add_faults([{"method": "GET", "path": "/call-lists/", "action": "bad_json"}])
    with pytest.raises(MalformedResponse, match="not valid JSON"):
        backend(redis_client).read_page(list_id, None)


def test_malformed_download_is_refused(
    cxone: dict[str, str], simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=2, seed=6)
    simulator.add_faults([{"method": "GET", "path": "/call-lists/", "action": "wrong_types"}])
    with pytest.raises(MalformedResponse, match="contactRecords"):
        backend(redis_client).read_page(list_id, None)


# --- the whole sweep -----------------------------------------------------------------------


@pytest.mark.usefixtures("sweep_worker")
def test_full_sweep_through_cxone(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Discovery, not an explicit API URL; removed numbers go to a DNC group.
    monkeypatch.delenv("CXSWEEP_API_URL")
    monkeypatch.setenv("CXSWEEP_CXONE_DNC_GROUP_ID", DNC_GROUP)
    simulator.add_dnc_group(DNC_GROUP)
    simulator.configure(page_size=50, job_delay=1.0)
    list_id = "4100021"  # fixed: the seeded mix of good and bad numbers depends on it
    simulator.put_call_list(list_id, count=400, seed=21)
    original = simulator.get_call_list(list_id)
    get_settings.cache_clear()
    changes, removed = expected(original)
    by_id = {r["ExternalId"]: r for r in original}
    # The seed must hold records with a good and a bad number, or this proves little.
    mixed = [cid for cid, after in changes.items() if "" in after.values() and cid not in removed]
    assert len(mixed) >= 10 and len(removed) >= 10

    locked = sorted(removed)[0]
    refused = sorted(mixed)[0]
    simulator.fail_records(remove={locked: "ProspectLocked"}, upload={refused: "InvalidRecord"})
    simulator.add_faults(
        [
            {
                "method": "GET",
                "path": "/call-lists/",
                "action": 429,
                "after": 2,
                "times": 1,
                "retry_after": "1",
            },
            {"method": "GET", "path": "/call-lists/", "action": 503, "after": 4, "times": 1},
            {"method": "POST", "path": "/upload$", "action": 502, "times": 1},
            {"method": "DELETE", "path": "/removeProspects$", "action": 503, "times": 1},
        ]
    )

    settings = launch.settings_for_run()
    assert settings.backend == "cxone" and not settings.api_url
    run_id = launch.start_run(settings, list_id, dry_run=False)
    time.sleep(0.3)
    simulator.revoke_tokens()  # workers get a 401 and refresh through the refresh token
    record = launch.wait_for_run(settings, run_id, timeout=180, quiet=True)

    # Two records were refused by the platform: the run says so, everything else is done.
    failures = RunStore(redis_client, run_id).failures()
    assert record["status"] == "failed", record
    assert "e.g." in record["message"], record  # a record's reason reaches the audit line
    assert set(failures) == {locked, refused}, failures
    assert failures[refused].startswith("upload job "), failures
    assert record["failure_count"] == 2, record
    assert record["total_processed"] == len(original)
    assert record["purge_count"] == len(removed) - 1
    assert record["success_count"] == len(changes) - 1

    final = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    assert set(final) == (set(by_id) - removed) | {locked}
    for cid, rec in final.items():
        if cid in changes and cid != refused:
            assert rec == {**by_id[cid], **changes[cid]}, cid
        else:
            assert rec == by_id[cid], cid
    # A record with one good and one bad number keeps the good one and blanks the bad.
    sample = next(cid for cid in sorted(mixed) if cid != refused)
    assert "" in [final[sample][c] for c in PHONES if by_id[sample][c]]
    assert any(final[sample][c].startswith("+") for c in PHONES)

    stats = simulator.stats()
    assert stats["requests"]["discovery"] == 1
    assert stats["password_grants"] == 1 and stats["refresh_grants"] >= 1
    # One download (the faults may cost a retry), then the list read back for the uploads:
    # far fewer reads than upload chunks, as one read serves every write waiting for it;
    # and the run's two re-reads of the list (before writing, after removing), each a
    # download of its own.
    uploads = -(-len(changes) // 60)
    assert 2 <= stats["requests"]["cxone_read"] <= 1 + uploads + 2 + 2, stats["requests"]
    assert set(stats["uploaded"]) == set(changes) - {refused}
    assert all(times == 1 for times in stats["uploaded"].values())
    assert stats["statuses"].get("429", 0) >= 1 and stats["statuses"].get("401", 0) >= 1

    dnc = set(simulator.dnc_numbers(DNC_GROUP))
    for cid in removed - {locked}:
        for column in PHONES:
            digits = "".join(ch for ch in by_id[cid][column] if ch.isdigit())
            if len(digits) >= 7:
                assert digits in dnc, (cid, column)


@pytest.mark.usefixtures("sweep_worker")
def test_dry_run_through_cxone_writes_nothing(cxone: dict[str, str], simulator: Any) -> None:
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=120, seed=22)
    original = simulator.get_call_list(list_id)
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=True)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    changes, removed = expected(original)
    assert record["status"] == "completed"
    assert record["planned_removals"] == len(removed)
    assert record["planned_updates"] == len(changes)
    stats = simulator.stats()
    assert stats["requests"]["upload"] == 0 and stats["requests"]["remove_prospects"] == 0
    assert simulator.get_call_list(list_id) == original


def test_cli_refuses_bad_access_key_fast(
    cxone: dict[str, str], simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_ACCESS_KEY_SECRET", "wrong")
    get_settings.cache_clear()
    with pytest.raises(CxsweepError, match="refused"):
        launch.start_run(launch.settings_for_run(), new_list_id(), dry_run=True)


@pytest.mark.usefixtures("sweep_worker")
def test_purge_guard_counts_blanked_secondary_numbers(
    cxone: dict[str, str], simulator: Any
) -> None:
    """A policy that blanks many secondary numbers destroys data while removing few
    records: the guard weighs phone values too, and the run halts before writing."""
    list_id = new_list_id()
    records = []
    for i in range(100):
        record = {"ExternalId": f"{list_id}-{i:03d}", "FirstName": "Pat"}
        record["PhoneNumber"] = "not a number" if i < 5 else f"+1650253{i:04d}"
        record["MobileNumber"] = "+33123456789" if 5 <= i < 65 else ""  # outside the regions
        record["WorkNumber"] = "+33123456780" if 5 <= i < 45 else ""
        records.append(record)
    simulator.put_call_list(list_id, records)
    original = simulator.get_call_list(list_id)
    settings = launch.settings_for_run()
    run_id = launch.start_run(settings, list_id, dry_run=False)
    record = launch.wait_for_run(settings, run_id, timeout=60, quiet=True)
    assert record["status"] == "halted", record
    # 5 of 100 records (5%) is under the guard of 20%; 105 of 200 values is not.
    assert "remove 5 of 100 contacts (5.0%)" in record["message"]
    assert "destroy 105 of 200 phone values (52.5%)" in record["message"]
    assert "--allow-purge-ratio" in record["message"]
    stats = simulator.stats()
    assert stats["requests"]["upload"] == 0 and stats["requests"]["remove_prospects"] == 0
    assert simulator.get_call_list(list_id) == original


@pytest.mark.usefixtures("sweep_worker")
def test_cxsweep_run_against_the_published_schema(
    cxone: dict[str, str],
    simulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Acceptance: `cxsweep run` against a server following NICE's schema (the list whole
    in one answer, uploads refused without expirationDate, status-only jobs), the API
    found by discovery: every good record corrected in place, every reject removed."""
    import json

    monkeypatch.delenv("CXSWEEP_API_URL")
    # Small pages: many more than the reading window, so reading waits for sanitizing.
    monkeypatch.setenv("CXSWEEP_CXONE_PAGE_SIZE", "10")
    list_id = "4100031"
    simulator.put_call_list(list_id, count=300, seed=31)
    original = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    get_settings.cache_clear()
    changes, removed = expected(list(original.values()))
    assert len(changes) >= 50 and len(removed) >= 5

    code = cli.main(["run", list_id, "--json", "--quiet", "--timeout", "180"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["status"] == "completed", record
    assert record["success_count"] == len(changes) and record["purge_count"] == len(removed)

    final = {r["ExternalId"]: r for r in simulator.get_call_list(list_id)}
    assert set(final) == set(original) - removed
    for cid, rec in final.items():
        assert rec == {**original[cid], **changes.get(cid, {})}, cid
    stats = simulator.stats()
    assert stats["requests"]["discovery"] == 1
    assert all(times == 1 for times in stats["uploaded"].values())


def test_new_settings_are_validated() -> None:
    from cxsweep.errors import SettingsError
    from cxsweep.settings import load_settings

    base = {"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_BACKEND": "cxone"}
    for name, value in (
        ("CXSWEEP_CXONE_AUTH", "token"),
        ("CXSWEEP_CXONE_CLIENT_AUTH", "private_key_jwt"),
        ("CXSWEEP_CXONE_LIST_EXPIRATION_DAYS", "0"),
        ("CXSWEEP_CXONE_INCLUDE_INACTIVE", "maybe"),
    ):
        with pytest.raises(SettingsError, match=name.removeprefix("CXSWEEP_")):
            load_settings({**base, name: value})
    access_key = load_settings(
        {
            **base,
            "CXSWEEP_CXONE_AUTH": "access-key",
            "CXSWEEP_CXONE_ACCESS_KEY_ID": "k",
            "CXSWEEP_CXONE_ACCESS_KEY_SECRET": "s",
        }
    )
    access_key.require_api()  # no client id needed
    with pytest.raises(SettingsError, match="CLIENT_ID"):
        load_settings({**base, "CXSWEEP_CXONE_ACCESS_KEY_ID": "k"}).require_api()
