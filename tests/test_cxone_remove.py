"""CXone removals (cxsweep/platforms/cxone_remove.py): removeProspects' partial and
ambiguous answers, number-typed ids, the do-not-call group."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests._cxone import DNC_GROUP, PHONES, backend, new_list_id


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
    from cxsweep.platforms.cxone_session import as_number

    assert as_number("12345") == 12345
    assert as_number("0123") == "0123"  # a number would lose the zero
    assert as_number("cx-1") == "cx-1" and as_number("١٢") == "١٢"
    list_id = new_list_id()
    simulator.put_call_list(
        list_id, [{"ExternalId": "501", "PhoneNumber": "x", "MobileNumber": "", "WorkNumber": ""}]
    )
    outcome = backend(redis_client).remove_contacts(list_id, ["501"])
    assert outcome.done == ["501"] and simulator.get_call_list(list_id) == []


def digits_of(record: dict[str, Any]) -> list[str]:
    found = ("".join(ch for ch in record[c] if ch.isdigit()) for c in PHONES)
    return [d for d in found if len(d) >= 7]


def test_numbers_the_dnc_group_holds_are_not_pushed_again(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_DNC_GROUP_ID", DNC_GROUP)
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=40, seed=9)
    records = [r for r in simulator.get_call_list(list_id) if len(digits_of(r)) >= 2][:3]
    held, partly, fresh = records
    # One contact's numbers are all in the group already, another's only in part; an
    # entry that has expired holds nothing.
    seeded = dict.fromkeys(digits_of(held))
    seeded[digits_of(partly)[0]] = None
    seeded[digits_of(fresh)[0]] = "2020-01-01T00:00:00Z"
    simulator.add_dnc_group(DNC_GROUP, numbers=seeded)
    client = backend(redis_client)
    client.read_page(list_id, None)  # remembers the numbers of the list
    ids = [r["ExternalId"] for r in records]
    numbers = {n for r in records for n in digits_of(r)}

    outcome = client.remove_contacts(list_id, ids)
    assert sorted(outcome.done) == sorted(ids)
    assert outcome.counts == {"already_suppressed": 1}
    stats = simulator.stats()
    assert stats["requests"]["dnc_search"] == len(numbers)
    # Only what the group did not hold (unexpired) was sent: no entry was rewritten
    # except the expired one.
    assert stats["dnc_added"] == len(numbers) - len(seeded)
    assert stats["dnc_rewritten"] == 1
    assert numbers <= set(simulator.dnc_numbers(DNC_GROUP))

    # A retried batch neither looks up nor pushes the contacts it settled.
    again = client.remove_contacts(list_id, ids)
    assert sorted(again.missing) == sorted(ids)
    assert again.counts == {"already_suppressed": 1}
    assert simulator.stats()["requests"]["dnc_search"] == len(numbers)
    assert simulator.stats()["requests"]["dnc"] == 1


def test_dnc_search_off_pushes_every_number(
    cxone: dict[str, str],
    simulator: Any,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXSWEEP_CXONE_DNC_GROUP_ID", DNC_GROUP)
    monkeypatch.setenv("CXSWEEP_CXONE_DNC_SEARCH", "false")
    list_id = new_list_id()
    simulator.put_call_list(list_id, count=10, seed=9)
    record = next(r for r in simulator.get_call_list(list_id) if digits_of(r))
    simulator.add_dnc_group(DNC_GROUP, numbers=digits_of(record))
    client = backend(redis_client)
    client.read_page(list_id, None)
    outcome = client.remove_contacts(list_id, [record["ExternalId"]])
    assert outcome.done == [record["ExternalId"]] and outcome.counts == {}
    stats = simulator.stats()
    assert stats["requests"].get("dnc_search", 0) == 0
    assert stats["dnc_rewritten"] == len(digits_of(record))
