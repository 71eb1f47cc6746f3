"""CXone reads (cxsweep/platforms/cxone_download.py): the whole list streamed into a spool
and served page by page, warnings of what would keep dialing, inactive lists, refused answers."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from cxsweep.errors import ApiError, MalformedResponse
from tests._cxone import DNC_GROUP, backend, new_list_id


def test_a_list_downloads_once_and_pages_from_the_spool(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cxsweep.platforms.cxone_download import SPOOL_DIR

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

    def logged() -> list[str]:
        # Only this module's: the session's worker threads may log meanwhile.
        return [r.getMessage() for r in caplog.records if r.name.endswith("cxone_download")]

    with caplog.at_level("WARNING", logger="cxsweep.platforms"):
        assert client.read_page(quiet, None).warnings == ()
        assert not logged()
        warned = client.read_page(loud, None).warnings
    # Logged, and handed to the run with the first page so that the operator sees them.
    assert len(warned) == 2, warned
    assert "skill 4002 is running" in warned[0]
    assert "4002 not scrubbed against DNC group 7001" in warned[1]
    # (The log masks what looks like a phone number: a seven-digit list id, say.)
    assert len(logged()) == 2 and "skill 4002 is running" in logged()[0]


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
