"""What the run's tasks return. A chord's callback reads its header tasks' results
(``cxsweep.runs.outcomes.unsuccessful`` / ``why``): ``ok``, and ``error`` when not; the
rest is for logs and Flower. Results travel as JSON: keys and small counts only.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from cxsweep.runs.outcomes import ChunkResult, RestoreResult

__all__ = [
    "ChunkResult",
    "Delivery",
    "Failure",
    "Handed",
    "PagePlanned",
    "PageRead",
    "Reread",
    "RestoreResult",
]


class Failure(TypedDict):
    """A step that failed for good (the run is failed with ``error``); the chord goes on,
    so its callback records the run."""

    ok: Literal[False]
    error: str
    #: the task that gave up retrying (``ApiTask.retry_or_give_up``)
    task: NotRequired[str]
    page: NotRequired[int]


class PageRead(TypedDict):
    """``fetch_page``: ``pages`` read from ``page`` on (``repeat``: a duplicate delivery)."""

    ok: Literal[True]
    page: int
    pages: NotRequired[int]
    repeat: NotRequired[bool]


class PagePlanned(TypedDict):
    """``sanitize_page``: the planned updates and removals of its pages (from ``page``)."""

    ok: Literal[True]
    page: int
    update: NotRequired[int]
    remove: NotRequired[int]
    repeat: NotRequired[bool]


class Reread(TypedDict):
    """``recheck_list``: a pass (``kind``) re-read the list from ``page`` on."""

    ok: Literal[True]
    kind: str
    page: int


class Handed(TypedDict):
    """A chord callback: it sent the next phase (``chunks`` to write, or ``confirming``
    the removals) or handed the run to ``record_outcome`` (``status``)."""

    ok: Literal[True]
    status: NotRequired[str]
    chunks: NotRequired[int]
    #: the first chunk of the wave of writes it sent
    wave: NotRequired[int]
    confirming: NotRequired[bool]
    repeat: NotRequired[bool]


class Delivery(TypedDict):
    """``send_webhook``: one attempt, its HTTP ``status`` or the outbox's ``state``."""

    ok: bool
    status: NotRequired[int]
    state: NotRequired[str]
    error: NotRequired[str]
    skipped: NotRequired[bool]
