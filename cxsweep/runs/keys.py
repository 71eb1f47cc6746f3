"""Every Redis key and counter name of cxsweep, in one module (as arq's ``constants.py``).

A key is built here or nowhere: the store, the tasks, the signals, the reports and the
benches all name Redis through this module, so the layout can be read (and changed) in
one place, and a counter written by one module and parsed back by another is spelled
once. ``tests/test_keys.py`` checks that no other module spells a ``cxsweep:`` key.

Keys are plain strings; keys of one run or one sweep hang off ``RunKeys``/``SweepKeys``.
"""

from __future__ import annotations

from collections.abc import Mapping

NAMESPACE = "cxsweep"

# --- runs ------------------------------------------------------------------------------

#: sorted set: run id -> when it was created
RUN_INDEX = f"{NAMESPACE}:runs"
RUN_PREFIX = f"{NAMESPACE}:run:"


#: the run's archive field (a page number no read page has) holding the records of
#: duplicates removed by ``keep_first`` that no page archived: they were to stay unchanged
DUPLICATES_ARCHIVE_PAGE = -1


def list_lock(list_id: str) -> str:
    """One run per list: the lock's value is the run id holding it."""
    return f"{NAMESPACE}:list-lock:{list_id}"


# A write chunk's tag in the freshness index and its pending counts: ``r3``, ``u0``.
REMOVE_CHUNK_TAG = "r"
UPDATE_CHUNK_TAG = "u"


def chunk_tag(kind: str, index: int) -> str:
    return (REMOVE_CHUNK_TAG if kind == "remove" else UPDATE_CHUNK_TAG) + str(index)


def chunk_of_tag(tag: str) -> tuple[str, int]:
    """(kind, index) of a chunk's tag: ``r3`` -> ("remove", 3)."""
    return ("remove" if tag[0] == REMOVE_CHUNK_TAG else "update"), int(tag[1:])


class RunKeys:
    """The keys of one run, all under ``cxsweep:run:{run_id}``."""

    def __init__(self, run_id: str) -> None:
        self.prefix = prefix = f"{RUN_PREFIX}{run_id}"
        self.meta = f"{prefix}:meta"
        self.counts = f"{prefix}:counts"
        self.updates = f"{prefix}:updates"
        self.removes = f"{prefix}:removes"
        self.removed = f"{prefix}:removed"
        self.already_gone = f"{prefix}:already-gone"
        self.archive = f"{prefix}:archive"
        self.failures = f"{prefix}:write-failures"
        self.wave_results = f"{prefix}:wave-results"
        self.number_claims = f"{prefix}:number-claims"
        self.duplicates = f"{prefix}:duplicates"
        self.duplicate_ids = f"{prefix}:duplicate-ids"
        self.writers = f"{prefix}:writers"
        #: list: the counts of each write chunk, pushed with its done marker, added to
        #: ``counts`` once when the run is recorded (``WriteState.settle_write_tallies``)
        self.write_tallies = f"{prefix}:write-tallies"
        self.cursors = f"{prefix}:cursors"
        self.seen_cursors = f"{prefix}:seen-cursors"
        self.contact_ids = f"{prefix}:contact-ids"
        self.planned = f"{prefix}:planned"
        self.stale = f"{prefix}:stale"
        self.restored = f"{prefix}:restored"
        self.freshness = f"{prefix}:freshness"
        #: hash: write chunk tag (``r3``, ``u0``) -> its contacts the verify pass has not
        #: judged yet; a chunk at 0 may be written before the pass ends
        self.chunk_pending = f"{prefix}:chunk-pending"
        #: set: the write chunks sent while the verify pass was running (its chord's)
        self.streamed = f"{prefix}:streamed"
        self.api_latency = f"{prefix}:api-latency"
        # What the platform said that the operator must see (a skill still dialing).
        self.warnings = f"{prefix}:warnings"
        self.duplicates_done = self.done("duplicates")

    def claim(self, step: str) -> str:
        return f"{self.prefix}:claim:{step}"

    def once(self, step: str) -> str:
        return f"{self.prefix}:once:{step}"

    def done(self, kind: str, index: int | None = None) -> str:
        """A step's done marker: ``done:page:3``, ``done:update:0``, ``done:duplicates``."""
        return f"{self.prefix}:done:{kind}" + ("" if index is None else f":{index}")

    def page(self, page_no: int) -> str:
        return f"{self.prefix}:page:{page_no}"

    def page_read(self, page_no: int) -> str:
        return f"{self.prefix}:read:{page_no}"

    def recheck_pass(self, kind: str) -> str:
        """A re-read pass (verify, confirm): its cursors and first page size."""
        return f"{self.prefix}:pass:{kind}"

    def task_failures(self, task_id: str) -> str:
        """A write task's per-contact failures, kept across its retries."""
        return f"{self.prefix}:failures:{task_id}"


# --- scheduled sweeps -------------------------------------------------------------------

#: sorted set: sweep id -> when it started
SWEEP_INDEX = f"{NAMESPACE}:sweeps"
#: the sweep id the schedule is running now
CURRENT_SWEEP = f"{NAMESPACE}:sweep:current"
#: names of the per-list RedBeat entries the schedule manages (to remove stale ones)
SWEEP_LIST_ENTRIES = f"{NAMESPACE}:sweep:list-entries"
#: RedBeat's own keys (``redbeat_key_prefix``)
REDBEAT_PREFIX = f"{NAMESPACE}:redbeat"


class SweepKeys:
    """The keys of one sweep, all under ``cxsweep:sweep:{sweep_id}``."""

    def __init__(self, sweep_id: str) -> None:
        self.prefix = prefix = f"{NAMESPACE}:sweep:{sweep_id}"
        self.meta = f"{prefix}:meta"
        self.pending = f"{prefix}:pending"
        self.active = f"{prefix}:active"
        self.runs = f"{prefix}:runs"
        self.skipped = f"{prefix}:skipped"
        self.advance_lock = f"{prefix}:advance-lock"


# --- the webhook outbox -----------------------------------------------------------------

#: sorted set: run id -> when its webhook is next due
WEBHOOK_OUTBOX = f"{NAMESPACE}:webhook:outbox"
WEBHOOK_ENTRY_PREFIX = f"{NAMESPACE}:webhook:run:"


def webhook_entry(run_id: str) -> str:
    return f"{WEBHOOK_ENTRY_PREFIX}{run_id}"


def webhook_sending(run_id: str) -> str:
    """Held while one process sends the run's webhook."""
    return f"{webhook_entry(run_id)}:sending"


# --- platforms: rate limit, tokens, CXone's caches --------------------------------------


def rate_bucket(tenant_digest: str) -> str:
    return f"{NAMESPACE}:rate:{tenant_digest}"


def token_cache(identity_digest: str) -> str:
    return f"{NAMESPACE}:token:{identity_digest}"


def token_refresh_lock(identity_digest: str) -> str:
    return f"{token_cache(identity_digest)}:lock"


def cxone_oidc(issuer_digest: str) -> str:
    """The token endpoint an issuer announces."""
    return f"{NAMESPACE}:cxone:oidc:{issuer_digest}"


class CxoneKeys:
    """CXone's caches of one account (tenant, discovered lists, uploads, read-backs)."""

    def __init__(self, identity_digest: str) -> None:
        self.prefix = prefix = f"{NAMESPACE}:cxone:{identity_digest}"
        self.tenant = f"{prefix}:tenant"

    def api_base(self, version: str) -> str:
        return f"{self.prefix}:api-base:{version}"

    def list_name(self, list_id: str) -> str:
        return f"{self.prefix}:list-name:{list_id}"

    def list_expiry(self, list_id: str) -> str:
        return f"{self.prefix}:list-expiry:{list_id}"

    def phones(self, list_id: str) -> str:
        return f"{self.prefix}:phones:{list_id}"

    def dnc_state(self, list_id: str) -> str:
        """Rejects of a list whose DNC push is settled: ``suppressed`` (the group held
        every number already) or ``pushed``; a retried removal neither looks up nor
        pushes them again."""
        return f"{self.prefix}:dnc:{list_id}"

    def upload(self, rows_digest: str) -> str:
        return f"{self.prefix}:upload:{rows_digest}"

    def upload_lease(self, rows_digest: str) -> str:
        """Held by the one worker sending an upload; expires if that worker dies."""
        return f"{self.prefix}:upload-lease:{rows_digest}"

    def uploads_pending(self, list_id: str) -> str:
        """Uploads to a list sent (or about to be) whose job id is not kept yet."""
        return f"{self.prefix}:uploads-pending:{list_id}"

    def known_jobs(self, list_id: str) -> str:
        """The upload jobs cxsweep kept the id of, on one list."""
        return f"{self.prefix}:jobs:{list_id}"

    def read_back(self, list_id: str, part: str) -> str:
        """A list's read-back: ``want``, ``seen``, ``lock``, ``took``."""
        return f"{self.prefix}:rb:{list_id}:{part}"


# --- the line-type look-up cache ---------------------------------------------------------

LOOKUP_NAMESPACE = f"{NAMESPACE}:lookup:v1"


# --- counter names (fields of a run's ``counts`` hash) ----------------------------------

#: API requests of a run by kind (``calls:list_page``) and by status (``status:429``)
CALLS_PREFIX = "calls:"
STATUS_PREFIX = "status:"
#: contacts removed by reason, by region and by line type
REASON_PREFIX = "reason:"
REGION_PREFIX = "region:"
TYPE_PREFIX = "type:"

# Counters written by one module and read by another. The Lua in ``scripts.py`` moves
# some of them too (to_update, to_remove, stale, chunks_done, still_present);
# tests/test_keys.py checks that it names only counters defined here.
PAGES_READ = "pages_read"
PAGES_SANITIZED = "pages_sanitized"
READ = "read"
FETCHED = "fetched"
UNCHANGED = "unchanged"
PHONE_VALUES = "phone_values"
VALUES_DESTROYED = "values_destroyed"
TO_UPDATE = "to_update"
TO_REMOVE = "to_remove"
UPDATED = "updated"
CHUNKS_DONE = "chunks_done"
#: removal chunks marked done: once all are, the removals are confirmed (``tasks.write``)
REMOVE_CHUNKS_DONE = "remove_chunks_done"
STALE = "stale"
STALE_PREFIX = "stale_"
STILL_PRESENT = "still_present"
REPEATED_ID = "repeated_id"
ALREADY_APPLIED = "already_applied"
#: rejects whose numbers the DNC group already held: no DNC push was needed
ALREADY_SUPPRESSED = "already_suppressed"
PLAN_SEEN_UPDATE = "plan_seen_update"
PLAN_SEEN_REMOVE = "plan_seen_remove"
RESTORED_RECREATED = "restored_recreated"
RESTORED_REVERTED = "restored_reverted"
#: time spent judging contacts: how many, and the sum in µs
LATENCY_N = "latency_n"
LATENCY_US_SUM = "latency_us_sum"
API_REQUESTS = "api_requests"
API_US_SUM = "api_us_sum"
RETRIES = "retries"


def reason_counter(reason: str) -> str:
    return f"{REASON_PREFIX}{reason}"


def status_counter(status: int | str) -> str:
    return f"{STATUS_PREFIX}{status}"


def restored_counter(kind: str) -> str:
    """``recreated`` or ``reverted``: ``RESTORED_RECREATED``, ``RESTORED_REVERTED``."""
    return f"restored_{kind}"


def calls_counter(kind: str) -> str:
    return f"{CALLS_PREFIX}{kind}"


def by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    """The counters under ``prefix``, named without it (``status:429`` -> ``429``)."""
    return {k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)}
