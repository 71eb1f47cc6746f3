"""CXone removals (cxsweep/platforms/cxone_remove.py): removeProspects' partial and
ambiguous answers, number-typed ids, the do-not-call group."""

from __future__ import annotations

from typing import Any

import redis

from tests._cxone import backend, new_list_id


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
