"""Tests mirroring ``cxsweep/runs/planfile.py``: a run's plan written as a file, read back
whole, and refused when cut short or edited."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis

from cxsweep.runs.model import PlanEntry
from cxsweep.runs.planfile import PlanFileError, read_plan, verify_plan, write_plan
from cxsweep.runs.store import RunStore

UPDATES = [
    PlanEntry("c-1", {"phone": "(650) 253-0001"}, {"phone": "+16502530001"}, None),
    PlanEntry("c-2", {"phone": "650.253.0002"}, {"phone": "+16502530002"}, None),
]
REMOVES = [PlanEntry("c-3", {"phone": "n/a"}, None, "unparseable")]


@pytest.fixture
def plan_path(redis_client: redis.Redis, tmp_path: Path) -> Path:
    store = RunStore(redis_client, f"test-planfile-{uuid.uuid4().hex[:10]}")
    store.create("list-pf", dry_run=True, options={})
    store.commit_page(0, UPDATES, REMOVES, {})
    path = tmp_path / "plan.jsonl"
    with path.open("w") as out:
        assert write_plan(store, out, "v2") == 3
    return path


def test_write_then_read_round_trips(plan_path: Path) -> None:
    header, entries = read_plan(plan_path)
    assert header["list_id"] == "list-pf" and header["backend"] == "v2"
    assert list(entries) == [*UPDATES, *REMOVES]
    assert verify_plan(plan_path) == (header, 3)
    lines = [json.loads(line) for line in plan_path.read_text().splitlines()]
    assert lines[1]["phone_before"] == "(650) 253-0001" and lines[3]["action"] == "remove"


def test_a_cut_file_is_refused(plan_path: Path) -> None:
    lines = plan_path.read_text().splitlines(keepends=True)
    plan_path.write_text("".join(lines[:-2]))
    with pytest.raises(PlanFileError, match="without its closing line"):
        verify_plan(plan_path)


def test_an_edited_entry_is_refused(plan_path: Path) -> None:
    plan_path.write_text(plan_path.read_text().replace("+16502530002", "+16502539999"))
    with pytest.raises(PlanFileError, match="altered after it was written"):
        verify_plan(plan_path)


def test_a_dropped_entry_is_refused_by_its_count(plan_path: Path) -> None:
    lines = plan_path.read_text().splitlines(keepends=True)
    plan_path.write_text("".join(lines[:2] + lines[3:]))
    with pytest.raises(PlanFileError, match="2 entries where its closing line counts 3"):
        verify_plan(plan_path)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "empty file"),
        ('{"hello": 1}\n', "no plan header"),
        ('{"cxsweep_plan": 1, "list_id": "l"}\n', "a plan of format 1"),
        ('{"cxsweep_plan": 2, "list_id": ""}\n', "names no list_id"),
        ("not json\n", "not a JSON line"),
    ],
)
def test_a_bad_header_is_refused_with_one_line(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PlanFileError, match=why) as raised:
        read_plan(path)
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="cannot read plan"):
        read_plan(tmp_path / "absent.jsonl")
