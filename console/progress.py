"""How a run looks while it goes: live bars per stage (read, sanitized, written) with
rates for a terminal, and one plain line for logs and ``cxsweep status``."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping

from cxsweep.runs import keys
from cxsweep.runs.store import kind_of

BAR = 24
WORDS = {"sweep": "run", "dry_run": "dry run", "apply": "apply", "restore": "restore"}


def _bar(done: int, total: int | None) -> str:
    if not total:
        return "[" + "·" * BAR + "]"
    filled = min(BAR, round(BAR * done / total))
    return "[" + "█" * filled + "░" * (BAR - filled) + "]"


class Progress:
    """Keeps a few seconds of samples so the rates shown are current, not run averages."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, dict[str, int]]] = deque()

    def rates(self, values: dict[str, int], now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        self.samples.append((now, values))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        then, old = self.samples[0]
        span = now - then
        return {k: (v - old.get(k, 0)) / span if span > 0 else 0.0 for k, v in values.items()}

    def lines(
        self, meta: Mapping[str, str], counts: Mapping[str, int], elapsed: float
    ) -> list[str]:
        kind = kind_of(meta)
        if kind == "restore":
            return self._restore_lines(meta, counts, elapsed)
        total = int(meta.get("total_records") or 0) or None
        read, judged = counts.get(keys.READ, 0), counts.get(keys.FETCHED, 0)
        chunks, chunks_total = counts.get(keys.CHUNKS_DONE, 0), int(meta.get("chunks_total") or 0)
        rates = self.rates({"read": read, "judged": judged, "chunks": chunks})
        reading = meta.get("status") == "reading"
        # Until the last page is read, the total is only known when the platform says it.
        read_total = total or (None if reading else read)
        head = f"{WORDS[kind]} {meta.get('run_id', '?')}  {meta.get('status', '?')}  {elapsed:.1f}s"
        lines = [
            head,
            f"  read      {_bar(read, read_total)} {read:>9,} contacts  {rates['read']:>8,.0f}/s",
            f"  sanitized {_bar(judged, read_total)} {judged:>9,} contacts  "
            f"{rates['judged']:>8,.0f}/s",
        ]
        if kind == "dry_run":
            # A dry run writes nothing: what it would write is its result.
            return [
                *lines,
                f"  would update {counts.get(keys.TO_UPDATE, 0):,}  would remove"
                f" {counts.get(keys.TO_REMOVE, 0):,}  (dry run: nothing is written)",
            ]
        lines.append(
            f"  written   {_bar(chunks, chunks_total or None)} {chunks:>9,} of {chunks_total:,}"
            f" chunks  {rates['chunks']:>6,.1f}/s"
        )
        if kind == "apply":
            lines.append(
                f"  plan      {int(meta.get('plan_updates') or 0):,} update(s),"
                f" {int(meta.get('plan_removals') or 0):,} removal(s);"
                f" {counts.get(keys.STALE, 0):,} stale so far"
            )
        return lines

    def _restore_lines(
        self, meta: Mapping[str, str], counts: Mapping[str, int], elapsed: float
    ) -> list[str]:
        """A restore reads nothing: it puts back what the archive holds, batch by batch."""
        recreated = counts.get(keys.RESTORED_RECREATED, 0)
        reverted = counts.get(keys.RESTORED_REVERTED, 0)
        done, total = recreated + reverted, int(meta.get("restore_total") or 0)
        rate = self.rates({"restored": done})["restored"]
        if "restore_total" not in meta:
            return [f"restore {meta.get('run_id', '?')}  waiting for a worker  {elapsed:.1f}s"]
        return [
            f"restore {meta.get('run_id', '?')} of run {_restore_of(meta)}"
            f"  {meta.get('status', '?')}  {elapsed:.1f}s",
            f"  restored  {_bar(done, total or None)} {done:>9,} of {total:,} contacts"
            f"  {rate:>8,.0f}/s",
            f"            recreated {recreated:,} (were removed), reverted {reverted:,}"
            " (numbers written back)",
        ]


def _restore_of(meta: Mapping[str, str]) -> str:
    return str(json.loads(meta.get("options") or "{}").get("restore_of", "?"))


def progress_line(meta: Mapping[str, str], counts: Mapping[str, int], elapsed: float) -> str:
    """One line of a run's progress, for logs and ``cxsweep status``."""
    kind = kind_of(meta)
    head = f"[{meta.get('status', '?'):>9}] {elapsed:6.1f}s  "
    if kind == "restore":
        if "restore_total" not in meta:
            return head + "restore waiting for a worker to take it up"
        # A restore reads nothing: it puts back, batch by batch, what the archive holds.
        return head + (
            f"restored {_restored(counts):,}/{int(meta.get('restore_total') or 0):,} contacts"
            f" (recreated {counts.get(keys.RESTORED_RECREATED, 0):,},"
            f" reverted {counts.get(keys.RESTORED_REVERTED, 0):,})"
        )
    fetched = counts.get(keys.FETCHED, 0)
    rate = fetched / elapsed if elapsed > 0 else 0.0
    line = head + (
        f"read {counts.get(keys.PAGES_READ, 0)} pages  sanitized {fetched} ({rate:,.0f}/s)"
    )
    if kind == "dry_run":
        return line + (
            f"  would update {counts.get(keys.TO_UPDATE, 0)}"
            f"  would remove {counts.get(keys.TO_REMOVE, 0)}"
        )
    if kind == "apply":
        line += f"  stale {counts.get(keys.STALE, 0)}"
    if meta.get("status") in ("writing", "completed", "halted", "failed"):
        line += (
            f"  written {counts.get(keys.CHUNKS_DONE, 0)}/{meta.get('chunks_total', 0)} chunks"
            f"  updated {counts.get(keys.UPDATED, 0)}"
        )
    return line


def _restored(counts: Mapping[str, int]) -> int:
    return counts.get(keys.RESTORED_RECREATED, 0) + counts.get(keys.RESTORED_REVERTED, 0)
