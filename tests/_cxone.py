"""What the CXone tests share: the columns of seeded calling lists, a backend built as a
worker builds it, and what the pipeline must do to a list (the ``cxone`` fixture that points
the settings at the simulator is in conftest.py)."""

from __future__ import annotations

import random
from typing import Any

import redis

from cxsweep.phone.numbers import Sanitizer
from cxsweep.phone.policy import settings_directive
from cxsweep.platforms.cxone import CxoneBackend
from cxsweep.platforms.factory import make_backend
from cxsweep.settings import get_settings

PHONES = ("PhoneNumber", "MobileNumber", "WorkNumber")
DNC_GROUP = "7001"


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
