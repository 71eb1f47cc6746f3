"""cxsweep.platforms.v2: the v2 campaign contract, against the simulator over real
sockets."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis

from cxsweep.errors import CredentialsRefused
from cxsweep.platforms.base import Change
from cxsweep.platforms.v2 import V2Client
from cxsweep.settings import load_settings


def client(redis_client: redis.Redis, **env: str) -> V2Client:
    return V2Client(load_settings({**os.environ, **env}), redis_client)


def answered(simulator: Any) -> list[dict[str, Any]]:
    """The requests the simulator answered with anything but 401 (a stale token)."""
    return [r for r in simulator.requests_seen() if r["status"] != 401]


def new_list_id() -> str:
    return f"list-{uuid.uuid4().hex[:8]}"


def test_read_page_follows_the_pages_to_the_end(simulator: Any, redis_client: redis.Redis) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, count=25, seed=3)
    simulator.configure(page_size=10)
    api = client(redis_client)
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        page = api.read_page(list_id, cursor)
        seen.extend(api.contact_id(c) for c in page.contacts)
        sizes.append(len(page.contacts))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [10, 10, 5]
    assert seen == [str(c["id"]) for c in simulator.get_list(list_id)]
    assert page.total in (None, 25)


def test_iter_lists_names_the_simulators_lists(simulator: Any, redis_client: redis.Redis) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, count=1, name="Spring leads")
    found = {item["id"]: item for item in client(redis_client).iter_lists()}
    assert found[list_id]["name"] == "Spring leads"


def test_update_writes_the_new_numbers_and_refuses_bad_ids_unsent(
    simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, [{"id": "c1", "phone": "650 253 0000"}, {"id": "c2", "phone": "x"}])
    outcome = client(redis_client).update_contacts(
        list_id,
        [Change("c1", {"phone": "+16502530000"}), Change("..", {"phone": "+16502530001"})],
    )
    assert outcome.done == ["c1"]
    assert list(outcome.failed) == [".."]
    phones = {c["id"]: c["phone"] for c in simulator.get_list(list_id)}
    assert phones == {"c1": "+16502530000", "c2": "x"}
    # (A 401 for a token cached before the simulator's reset is answered, not counted.)
    patches = [r for r in answered(simulator) if r["method"] == "PATCH"]
    assert len(patches) == 1


def test_remove_tells_done_from_already_gone(simulator: Any, redis_client: redis.Redis) -> None:
    list_id = new_list_id()
    simulator.put_list(
        list_id, [{"id": "keep", "phone": "+16502530000"}, {"id": "bad", "phone": "1"}]
    )
    outcome = client(redis_client).remove_contacts(list_id, ["bad", "ghost", "a/b"])
    assert outcome.done == ["bad"]
    assert outcome.missing == ["ghost"]
    assert "slash" in outcome.failed["a/b"]
    assert [c["id"] for c in simulator.get_list(list_id)] == ["keep"]
    deletes = [r["path"] for r in answered(simulator) if r["method"] == "DELETE"]
    assert len(deletes) == 2 and not any(path.endswith("/b") for path in deletes)


def test_create_restores_removed_contacts_and_counts_present_ones_as_missing(
    simulator: Any, redis_client: redis.Redis
) -> None:
    list_id = new_list_id()
    simulator.put_list(list_id, [{"id": "here", "phone": "+16502530000"}])
    api = client(redis_client)
    outcome = api.create_contacts(
        list_id, [{"id": "here", "phone": "+16502530000"}, {"id": "back", "phone": "+16502530001"}]
    )
    assert outcome.done == ["back"] and outcome.missing == ["here"] and outcome.failed == {}
    assert {c["id"] for c in simulator.get_list(list_id)} == {"here", "back"}


def test_a_wrong_secret_is_refused_with_an_operator_message(
    simulator: Any, redis_client: redis.Redis
) -> None:
    api = client(redis_client, CXSWEEP_CLIENT_SECRET=f"wrong-{uuid.uuid4().hex}")
    with pytest.raises(CredentialsRefused) as refused:
        api.check_credentials()
    message = str(refused.value)
    assert "CXSWEEP_CLIENT_SECRET" in message and "\n" not in message
    assert "wrong-" not in message  # the secret itself is never shown
