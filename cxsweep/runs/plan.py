"""Planning a run: each page judged against the policy (or a reviewed plan), then the
whole plan judged against the purge guard before anything is written.

Plain functions over a run's Redis state and a backend; the tasks in ``tasks/`` decide
when they run and retry them. Nothing here sleeps or retries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxsweep import jsoncodec
from cxsweep.phone.numbers import Directive, Sanitizer
from cxsweep.platforms.base import Backend
from cxsweep.runs import keys
from cxsweep.runs.keys import REASON_PREFIX, REGION_PREFIX, TYPE_PREFIX
from cxsweep.runs.store import PlanEntry, RunStore

# List positions are page_no * this + index: pages never hold this many contacts.
PAGE_POSITIONS = 10_000_000


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


@dataclass
class PagePlan:
    updates: list[PlanEntry] = field(default_factory=list)
    removes: list[PlanEntry] = field(default_factory=list)
    archive: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    #: (E.164, position in the list, JSON row) of kept numbers, for ``keep_first``
    numbers: list[tuple[str, int, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def unique_contacts(
    store: RunStore, page_no: int, contacts: list[dict[str, Any]], backend: Backend
) -> tuple[list[dict[str, Any]], int]:
    """The page's contacts minus those already seen: an id another page claimed first
    (offset paging shows a contact twice when the list shifts under it), or repeated on
    this page. A contact is judged and written once, never as a duplicate of itself.
    Returns the contacts to judge and how many were dropped."""
    ids = [backend.contact_id(contact) for contact in contacts]
    elsewhere = store.claim_ids(page_no, ids)
    seen: set[str] = set()
    kept = []
    for contact, contact_id in zip(contacts, ids, strict=True):
        if contact_id in elsewhere or contact_id in seen:
            continue
        seen.add(contact_id)
        kept.append(contact)
    return kept, len(contacts) - len(kept)


def plan_page(
    contacts: Sequence[dict[str, Any]],
    sanitizer: Sanitizer,
    backend: Backend,
    *,
    first_position: int | None = None,
) -> PagePlan:
    """Judge every contact of a page: keep as is, rewrite to E.164, or remove (with why).

    Every phone field the backend names is judged; a contact with no good number is
    removed, one with a good and a bad number keeps the good one and blanks the bad.
    """
    plan = PagePlan()
    fields = backend.phone_fields
    width = len(fields)
    contact_id_of = backend.contact_id
    needs_record = backend.update_needs_record
    # One sanitizer call for the whole page: look-ups and caches work in batches.
    raws = [contact.get(name) for contact in contacts for name in fields]
    verdicts = sanitizer.check_many(raws)
    # Counted here and added to the page's counts once: this loop runs for every contact
    # of the list, and a counter's increment per contact cost a tenth of its planning.
    latency = 0.0
    phone_values = destroyed = to_remove = to_update = unchanged = blanked = 0
    regions: Counter[str] = Counter()
    types: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for position, contact in enumerate(contacts):
        contact_id = contact_id_of(contact)
        first = position * width
        values = raws[first : first + width]
        judged = verdicts[first : first + width]
        before = dict(zip(fields, values, strict=True))
        present = [
            (name, verdict)
            for name, value, verdict in zip(fields, values, judged, strict=True)
            if isinstance(value, str) and value.strip()
        ]
        # The purge guard weighs phone values as well as records: blanking secondary
        # numbers destroys data without removing a record.
        filled = len(present)
        phone_values += filled
        if not present:
            present = [(fields[0], judged[0])]
        good = []
        for pair in present:
            latency += pair[1].latency_us
            if pair[1].reason is None:
                good.append(pair)
        if not good:
            reason = str(present[0][1].reason)
            destroyed += filled
            to_remove += 1
            reasons[reason] += 1
            plan.removes.append(PlanEntry(contact_id, before, None, reason))
            plan.archive.append(contact)
            continue
        primary = good[0][1]
        if primary.region:
            regions[primary.region] += 1
        if primary.line_type:
            types[primary.line_type] += 1
        after = {name: str(v.e164) for name, v in good if v.e164 != before[name]}
        if first_position is not None:
            # keep_first: who dials this number first is decided once the plan is whole.
            category = keys.TO_UPDATE if after else keys.UNCHANGED
            # A contact left unchanged is in no archive page: should it lose its number's
            # claim, its removal must still be undoable, so its row carries the record.
            # (A contact to update is archived with its page.)
            kept = None if after else contact
            row = jsoncodec.dumps_text([contact_id, category, before, kept])
            plan.numbers.append((str(primary.e164), first_position + position, row))
        if len(good) < len(present):
            for name, verdict in present:
                if verdict.reason is not None:
                    after[name] = ""  # a bad secondary number is blanked, not dialled
                    blanked += 1
                    reasons[str(verdict.reason)] += 1
        if after:
            to_update += 1
            record = contact if needs_record else None
            plan.updates.append(PlanEntry(contact_id, before, after, None, record))
            plan.archive.append(contact)
        else:
            unchanged += 1
    counts = plan.counts
    # Only the counters a contact moved are set (a page of none sets none), as before.
    if contacts:
        counts[keys.PHONE_VALUES] += phone_values
    if to_remove or blanked:
        counts[keys.VALUES_DESTROYED] += destroyed + blanked
    if to_remove:
        counts[keys.TO_REMOVE] += to_remove
    if blanked:
        counts["blanked"] += blanked
    if to_update:
        counts[keys.TO_UPDATE] += to_update
    if unchanged:
        counts[keys.UNCHANGED] += unchanged
    for prefix, tally in ((REASON_PREFIX, reasons), (REGION_PREFIX, regions), (TYPE_PREFIX, types)):
        for name, count in tally.items():
            counts[prefix + name] += count
    counts[keys.FETCHED] += len(contacts)
    counts[keys.LATENCY_N] += len(contacts)
    counts[keys.LATENCY_US_SUM] += round(latency)
    return plan


def judge_planned(contact: dict[str, Any], entry: PlanEntry) -> str:
    """``fresh`` when the contact still holds the numbers the plan saw, ``applied`` when
    it already holds what the plan would write (the same plan, applied before), else
    ``stale`` (changed on the platform since)."""
    now = {name: contact.get(name) for name in entry.before}
    if now == entry.before:
        return "fresh"
    wanted = {**entry.before, **entry.after} if entry.after is not None else None
    if wanted and all((now.get(k) or "") == (v or "") for k, v in wanted.items()):
        return "applied"
    return "stale"


def plan_page_from_plan(
    contacts: Sequence[dict[str, Any]], planned: dict[str, PlanEntry], backend: Backend
) -> PagePlan:
    """``cxsweep apply``: the reviewed plan's entries for this page, each kept only when
    the contact still holds the numbers the plan saw. A contact changed on the platform
    since is skipped and reported (``stale``), so a stale plan never overwrites newer data.
    """
    plan = PagePlan()
    counts = plan.counts
    for contact in contacts:
        contact_id = backend.contact_id(contact)
        counts[keys.PHONE_VALUES] += sum(1 for f in backend.phone_fields if _filled(contact.get(f)))
        entry = planned.get(contact_id)
        if entry is None:
            counts[keys.UNCHANGED] += 1
            continue
        counts[keys.PLAN_SEEN_REMOVE if entry.after is None else "plan_seen_update"] += 1
        judged = judge_planned(contact, entry)
        if judged != "fresh":
            if judged == "applied":
                counts[keys.ALREADY_APPLIED] += 1  # the same plan, applied before
                continue
            counts[keys.STALE] += 1
            plan.stale.append(contact_id)
            continue
        plan.archive.append(contact)
        if entry.after is None:
            counts[keys.VALUES_DESTROYED] += sum(1 for v in entry.before.values() if _filled(v))
            counts[keys.TO_REMOVE] += 1
            counts[REASON_PREFIX + str(entry.reason)] += 1
            plan.removes.append(entry)
        else:
            counts[keys.VALUES_DESTROYED] += sum(
                1 for f, v in entry.after.items() if v == "" and _filled(entry.before.get(f))
            )
            counts[keys.TO_UPDATE] += 1
            record = contact if backend.update_needs_record else None
            plan.updates.append(PlanEntry(contact_id, entry.before, entry.after, None, record))
    counts[keys.FETCHED] += len(contacts)
    counts["planned_seen"] += len(plan.updates) + len(plan.removes) + len(plan.stale)
    return plan


def plan_stored_page(
    store: RunStore,
    page_no: int,
    contacts: list[dict[str, Any]],
    backend: Backend,
    sanitizer_for: Callable[[str], Sanitizer],
) -> PagePlan:
    """Plan one read page and commit the plan to the run.

    ``cxsweep apply`` follows the reviewed plan (``plan_page_from_plan``); any other run
    judges each number against its list's policy (``plan_page``), numbering the contacts
    by list position when ``keep_first`` must later pick each number's first holder.
    ``sanitizer_for`` (the list's sanitizer) is asked for only when numbers are judged.
    """
    contacts, repeated = unique_contacts(store, page_no, contacts, backend)
    meta, options = store.meta_and_options()
    if options.get("apply"):
        ids = [backend.contact_id(c) for c in contacts]
        plan = plan_page_from_plan(contacts, store.planned_among(ids), backend)
        store.note_stale(plan.stale)
    else:
        sanitizer = sanitizer_for(meta["list_id"])
        keep_first = sanitizer.directive.duplicates == "keep_first"
        plan = plan_page(
            contacts,
            sanitizer,
            backend,
            first_position=page_no * PAGE_POSITIONS if keep_first else None,
        )
    plan.counts[keys.REPEATED_ID] += repeated
    store.commit_page(page_no, plan.updates, plan.removes, plan.counts, plan.archive, plan.numbers)
    return plan


def purge_limit(
    options: Mapping[str, Any], list_id: str, directive_for: Callable[[str], Directive]
) -> float:
    """The purge guard's ratio for a run: the operator's ``--allow-purge-ratio`` when
    given, else the list's policy (``max_purge_ratio``)."""
    allowed = options.get("allow_purge_ratio")
    return float(allowed) if allowed is not None else directive_for(list_id).max_purge_ratio


@dataclass(frozen=True)
class Judgement:
    """What to do once the plan is whole."""

    status: str  # "write", or a final status: "completed", "halted", "failed"
    message: str = ""


def judge_plan(
    store: RunStore, header_results: Sequence[Any], *, dry_run: bool, max_purge_ratio: float
) -> Judgement:
    """Decide, from the whole plan, whether writes may start.

    The purge guard: a plan that would remove more than ``max_purge_ratio`` of the list
    (a list that is mostly garbage, or a policy gone wrong) writes nothing at all.
    """
    meta = store.meta()
    if meta.get("error"):
        return Judgement("failed", meta["error"])
    failures = [r for r in header_results if isinstance(r, dict) and not r.get("ok", False)]
    if failures:
        return Judgement("failed", str(failures[0].get("error", "a read step failed")))
    counts = store.counts()
    # Whole means: the last page was seen (one without a next page), and every page
    # from the first to it was sanitized. Reading that stopped early judges nothing.
    if not meta.get("pages_total"):
        return Judgement(
            "failed",
            f"the list's last page was never read ({counts.get(keys.PAGES_READ, 0)} page(s) read):"
            " the plan is incomplete, nothing was written",
        )
    pages_total = int(meta["pages_total"])
    missing = store.pages_missing(pages_total)
    if missing:
        shown = ", ".join(str(n) for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
        return Judgement(
            "failed",
            f"{len(missing)} of {pages_total} pages were never sanitized ({shown}):"
            " the plan is incomplete, nothing was written",
        )
    total, removals = counts.get(keys.FETCHED, 0), counts.get(keys.TO_REMOVE, 0)
    values, destroyed = counts.get(keys.PHONE_VALUES, 0), counts.get(keys.VALUES_DESTROYED, 0)
    ratio = removals / total if total else 0.0
    value_ratio = destroyed / values if values else 0.0
    guard = ""
    if ratio > max_purge_ratio or value_ratio > max_purge_ratio:
        guard = (
            f"the plan would remove {removals} of {total} contacts ({ratio:.1%}) and destroy"
            f" {destroyed} of {values} phone values ({value_ratio:.1%}), above the purge guard"
            f" of {max_purge_ratio:.0%}"
        )
        ratio = max(ratio, value_ratio)
    if dry_run:
        note = "dry run: nothing was written"
        return Judgement("completed", f"{note}; {guard}" if guard else note)
    if guard:
        return Judgement(
            "halted",
            f"{guard}: nothing was updated or removed; to proceed deliberately, run again"
            f" with --allow-purge-ratio {min(1.0, ratio + 0.005):.2f}",
        )
    return Judgement("write")
