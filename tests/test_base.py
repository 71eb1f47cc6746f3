"""cxsweep.platforms.base: the Backend protocol, its result types, and which contact ids
may ever be written to."""

from __future__ import annotations

import dataclasses
import os

import pytest
import redis

from cxsweep.platforms.base import (
    INVALID_ID,
    Backend,
    Change,
    Page,
    WriteOutcome,
    contact_id_problem,
    writable_ids,
)
from cxsweep.platforms.cxone import CxoneBackend
from cxsweep.platforms.v2 import V2Client
from cxsweep.settings import Settings, load_settings


@pytest.mark.parametrize(
    ("contact_id", "why"),
    [
        ("", "empty"),
        (None, "empty"),
        (42, "empty"),
        (".", "dot segment"),
        ("..", "dot segment"),
        ("a/b", "slash"),
        ("..\\x", "slash"),
        ("c1\r\nX-Evil: 1", "control character"),
        ("c\x00", "control character"),
    ],
)
def test_an_id_that_would_steer_a_write_elsewhere_is_refused(contact_id: object, why: str) -> None:
    problem = contact_id_problem(contact_id)
    assert problem is not None and problem.startswith(INVALID_ID) and why in problem


@pytest.mark.parametrize("contact_id", ["c1", "7", "...", "a.b", "ünïcode", "id with space"])
def test_ordinary_ids_may_be_written(contact_id: str) -> None:
    assert contact_id_problem(contact_id) is None


def test_writable_ids_splits_in_order_with_reasons() -> None:
    ok, refused = writable_ids(["c1", "..", "c2", "x/y"])
    assert ok == ["c1", "c2"]
    assert set(refused) == {"..", "x/y"} and "slash" in refused["x/y"]


def test_write_outcomes_do_not_share_their_lists() -> None:
    first, second = WriteOutcome(), WriteOutcome()
    first.done.append("c1")
    first.failed["c2"] = "refused"
    assert second == WriteOutcome(done=[], missing=[], failed={})


def test_pages_and_changes_are_frozen() -> None:
    page = Page(contacts=[{"id": "c1"}], next_cursor=None)
    assert page.total is None
    change = Change("c1", {"phone": "+16502530000"})
    assert dict(change.record) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.next_cursor = "elsewhere"  # type: ignore[misc]


def cxone_settings() -> Settings:
    # Building a backend sends nothing: the auth URL is never called here.
    return load_settings(
        {
            "CXSWEEP_ENV_FILE": os.devnull,
            "CXSWEEP_BACKEND": "cxone",
            "CXSWEEP_CXONE_AUTH": "access-key",
            "CXSWEEP_CXONE_AUTH_URL": "http://127.0.0.1:9",
            "CXSWEEP_CXONE_ACCESS_KEY_ID": "key-base",
            "CXSWEEP_CXONE_ACCESS_KEY_SECRET": "secret-base",
        }
    )


def test_both_backends_offer_every_member_of_the_protocol(redis_client: redis.Redis) -> None:
    members = set(Backend.__annotations__) | {
        name
        for name, value in vars(Backend).items()
        if callable(value) and not name.startswith("_")
    }
    assert {"read_page", "remove_contacts", "phone_fields", "update_needs_record"} <= members
    backends: list[Backend] = [
        V2Client(load_settings(), redis_client),
        CxoneBackend(cxone_settings(), redis_client),
    ]
    for backend in backends:
        missing = sorted(name for name in members if not hasattr(backend, name))
        assert missing == [], backend.name
        assert backend.update_batch_size >= 1 and backend.remove_batch_size >= 1
        assert backend.phone_fields and all(isinstance(f, str) for f in backend.phone_fields)
    assert [b.name for b in backends] == ["v2", "cxone"]
