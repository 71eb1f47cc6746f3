"""Tests mirroring ``cxsweep/runs/outcomes.py``: reading a chord header's results."""

from __future__ import annotations

from cxsweep.runs.outcomes import ChunkResult, unsuccessful, why


def test_unsuccessful_keeps_failures_and_non_results() -> None:
    good: ChunkResult = {"ok": True, "kind": "update", "chunk": 0}
    bad: ChunkResult = {"ok": False, "kind": "remove", "chunk": 1, "error": "boom"}
    crash = RuntimeError("worker lost")
    assert unsuccessful([good, bad, crash, None, {"kind": "update"}]) == [
        bad,
        crash,
        None,
        {"kind": "update"},
    ]
    assert unsuccessful([good]) == []


def test_why_names_the_error_or_the_default() -> None:
    assert why({"ok": False, "error": "409 conflict"}, "a step failed") == "409 conflict"
    assert why({"ok": False}, "a step failed") == "a step failed"
    assert why(ValueError("bad page"), "a step failed") == "bad page"
