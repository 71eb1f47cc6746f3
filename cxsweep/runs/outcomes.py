"""What a step returns to the task that ran it, and through a chord to the step that reads
it back: ``ok``, and ``error`` (why not) when not. The rest is for logs and Flower.

A chord's callback reads its header's results with ``unsuccessful`` and ``why``: a
result that is not one of these dicts (Celery passes an exception on) is a failure too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict


class ChunkResult(TypedDict):
    """One chunk of updates or removals (``kind``), written or not."""

    ok: bool
    kind: str
    chunk: int
    error: NotRequired[str]
    #: the task that gave up retrying (``ApiTask.retry_or_give_up``)
    task: NotRequired[str]
    #: a redelivered chunk that found its work done
    repeat: NotRequired[bool]
    #: not written: the run's breaker tripped
    halted: NotRequired[bool]
    updated: NotRequired[int]
    failed: NotRequired[int]


class RestoreResult(TypedDict):
    """One archive page put back by a restore."""

    ok: bool
    page: int
    error: NotRequired[str]
    task: NotRequired[str]
    repeat: NotRequired[bool]
    halted: NotRequired[bool]
    recreated: NotRequired[int]
    reverted: NotRequired[int]


def unsuccessful(results: Sequence[object]) -> list[object]:
    """The header results that are not ``ok``."""
    return [r for r in results if not (isinstance(r, Mapping) and r.get("ok"))]


def why(result: object, default: str) -> str:
    """The error a failed header result names, else ``default``."""
    return str(result.get("error", default)) if isinstance(result, Mapping) else str(result)
