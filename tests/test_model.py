"""Tests mirroring ``cxsweep/runs/model.py``: run kinds, run ids and ``PlanEntry``."""

from __future__ import annotations

import json
import re

from cxsweep.runs.model import ACTIVE, FINAL, KINDS, PlanEntry, kind_of, new_run_id, run_kind


def test_plan_entry_round_trips_through_json() -> None:
    update = PlanEntry("c-1", {"phone": "(650) 253-0000"}, {"phone": "+16502530000"}, None)
    removal = PlanEntry("c-2", {"phone": "n/a"}, None, "unparseable")
    whole = PlanEntry("c-3", {"p": "1"}, {"p": ""}, None, record={"id": "c-3", "p": "1"})
    for entry in (update, removal, whole):
        assert PlanEntry.from_json(entry.to_json()) == entry
        assert PlanEntry.from_json(entry.to_json().encode()) == entry


def test_plan_entries_decode_many_at_once_as_one_by_one() -> None:
    entries = [
        PlanEntry("c-1", {"phone": "(650) 253-0000"}, {"phone": "+16502530000"}, None),
        PlanEntry("c-2", {"phone": "n/a"}, None, "unparseable"),
        # A value past 64 bits and a lone surrogate: the whole batch decodes exactly.
        PlanEntry("c-3", {"p": "1"}, {"p": ""}, None, record={"n": 2**70, "s": "\ud800"}),
    ]
    rows = [entry.to_json().encode() for entry in entries]
    assert PlanEntry.many_from_json(rows) == entries
    assert PlanEntry.many_from_json([row.decode() for row in rows]) == entries
    assert PlanEntry.many_from_json([]) == []
    assert repr(PlanEntry.many_from_json(rows)[2].record) == repr({"n": 2**70, "s": "\ud800"})


def test_plan_entry_omits_an_absent_record() -> None:
    row = json.loads(PlanEntry("c-1", {"phone": None}, None, "missing").to_json())
    assert row == ["c-1", {"phone": None}, None, "missing"]


def test_run_kind_from_options() -> None:
    assert run_kind(False, {}) == "sweep"
    assert run_kind(True, {}) == "dry_run"
    assert run_kind(False, {"apply": "plan.jsonl"}) == "apply"
    assert run_kind(False, {"restore_of": "r1", "apply": "x"}) == "restore"
    assert {run_kind(d, o) for d in (True, False) for o in ({}, {"apply": 1})} <= set(KINDS)


def test_kind_of_prefers_the_stored_kind_and_derives_an_old_one() -> None:
    assert kind_of({"kind": "apply", "dry_run": "1"}) == "apply"
    assert kind_of({"dry_run": "1"}) == "dry_run"
    assert kind_of({"kind": "bogus", "options": json.dumps({"restore_of": "r"})}) == "restore"
    assert kind_of({}) == "sweep"


def test_new_run_ids_are_timestamped_and_unique() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", i) for i in ids)
    assert not set(ACTIVE) & set(FINAL)
