"""Correcting CXone records: uploads of whole records as status-only jobs, followed by
``JobPending`` retries, and verified by reading the list back.
"""

from __future__ import annotations

import base64
import csv
import datetime
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from cxsweep.errors import (
    ApiError,
    MalformedResponse,
    NotFound,
    NotYet,
    RetryableApiError,
)
from cxsweep.platforms.base import Change, WriteOutcome, contact_id_problem, writable_ids
from cxsweep.platforms.cxone_download import ListDownload
from cxsweep.platforms.cxone_session import phone_digits, platform_time
from cxsweep.platforms.http import (
    path_of,
)
from cxsweep.redisconn import text

log = logging.getLogger(__name__)

# A worker that claimed an upload and died frees the claim this soon; its upload, if it
# went out, is then looked for among the list's jobs within this much of its start.
UPLOAD_CLAIM_SECONDS = 120
# Assumed: the platform's clock (a job's submitDate) is within 5 minutes of Redis's.
JOB_CLOCK_SKEW = 300
MAX_JOB_PAGES = 50
# After a job ends its result is kept a little, for a retry of the same chunk.
JOB_RESULT_SECONDS = 900
MAX_JOB_POLL_SECONDS = 60.0


class JobPending(NotYet):
    """An upload job has not ended yet: the task should come back in ``retry_after`` s."""

    def __init__(self, message: str, *, job_id: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.job_id = job_id


class ListUploads(ListDownload):
    """Uploads of corrected (or restored) records and their jobs."""

    # --- correcting -------------------------------------------------------------------

    def update_contacts(self, list_id: str, changes: Sequence[Change]) -> WriteOutcome:
        """Upload the corrected records (whole) and follow the job; see ``JobPending``."""
        if len(changes) > self.update_batch_size:
            raise ValueError(f"at most {self.update_batch_size} records per upload")
        outcome = WriteOutcome()
        rows: list[dict[str, Any]] = []
        for change in changes:
            problem = contact_id_problem(change.contact_id)
            if problem is not None:
                outcome.failed[change.contact_id] = problem
                continue
            if not change.record:
                # Without the record an upload would blank every other column.
                outcome.failed[change.contact_id] = "the record as read is not known"
                continue
            rows.append({**change.record, **change.phones})
        if not rows:
            return outcome
        failures = self._upload_and_follow(list_id, rows)
        for row in rows:
            cid = self.contact_id(row)
            if cid in failures:
                outcome.failed[cid] = failures[cid]
            else:
                outcome.done.append(cid)
        return outcome

    def create_contacts(self, list_id: str, contacts: Sequence[Mapping[str, Any]]) -> WriteOutcome:
        """Restore: upload the records as they were (the same job handling as updates)."""
        ids, refused = writable_ids([self.contact_id(c) for c in contacts])
        if not ids:
            return WriteOutcome(failed=refused)
        rows = [dict(c) for c in contacts if self.contact_id(c) not in refused]
        failures = self._upload_and_follow(list_id, rows)
        return WriteOutcome(
            done=[i for i in ids if i not in failures], failed={**refused, **failures}
        )

    @staticmethod
    def to_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
        header: dict[str, None] = {}
        for row in rows:
            header.update(dict.fromkeys(row))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else str(row.get(c)) for c in header])
        return out.getvalue().encode("utf-8")

    def _upload_and_follow(self, list_id: str, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Per-record failures of the upload of ``rows``, once its job has ended and the
        list has been read back.

        The same rows always map to the same Redis key, so a retried task (or a second
        worker handed the same chunk) polls the job already submitted.
        """
        canonical = json.dumps([list_id, rows], sort_keys=True, default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:24]
        key = self._keys.upload(digest)
        job_id = text(self.redis.hget(key, "job_id")) or self._submit(list_id, rows, digest)
        ids = [self.contact_id(row) for row in rows]
        ended_at = text(self.redis.hget(key, "ended_at"))
        if not ended_at:
            try:
                job = self._job(job_id)
            except NotFound:
                # The platform forgot the job: upload again (an overwrite is idempotent).
                self.redis.delete(key)
                raise JobPending(
                    f"upload job {job_id} is unknown to CXone: uploading again",
                    job_id=job_id,
                    retry_after=self.settings.cxone_job_poll_seconds,
                ) from None
            if job.get("isCancelled") is True:
                self.redis.expire(key, JOB_RESULT_SECONDS)
                return dict.fromkeys(ids, f"upload job {job_id} was cancelled")
            if job.get("isComplete") is not True:
                polls = int(self.redis.hincrby(key, "polls", 1))
                wait = min(
                    self.settings.cxone_job_poll_seconds * 2 ** (polls - 1), MAX_JOB_POLL_SECONDS
                )
                raise JobPending(
                    f"upload job {job_id} is still running", job_id=job_id, retry_after=wait
                )
            # When this worker saw it end: a read started later shows what it did.
            self.redis.hsetnx(key, "ended_at", self._now())
            ended_at = text(self.redis.hget(key, "ended_at"))
        # The job answers only its status: what landed is read from the list itself.
        observed = self.read_back(list_id, ids, float(ended_at))
        self.redis.expire(key, JOB_RESULT_SECONDS)
        failures: dict[str, str] = {}
        for cid, row in zip(ids, rows, strict=True):
            got = observed.get(cid)
            if got is None:
                failures[cid] = f"upload job {job_id} ended but the record is not in the list"
                continue
            # Assumed: CXone may reformat a number; the same digits count as landed.
            wrong = [
                c for c in self.phone_fields if phone_digits(row.get(c)) != phone_digits(got.get(c))
            ]
            if wrong:
                column = wrong[0]
                failures[cid] = (
                    f"upload job {job_id} ended but the list holds {column}="
                    f"{got.get(column)!r}, not {row.get(column)!r}"
                )
        return failures

    def _submit(self, list_id: str, rows: list[dict[str, Any]], digest: str) -> str:
        """The job of this upload of ``rows``: sent now, or found again when an earlier
        attempt sent it but its id was lost (the answer never came, or the worker died
        before keeping it)."""
        lease = self._keys.upload_lease(digest)
        if not self.redis.set(lease, 1, nx=True, ex=UPLOAD_CLAIM_SECONDS):
            raise JobPending(
                "another worker is uploading this chunk",
                job_id="",
                retry_after=self.settings.cxone_job_poll_seconds,
            )
        key, pending = self._keys.upload(digest), self._keys.uploads_pending(list_id)
        deadline = self.settings.run_deadline_seconds
        try:
            attempted = text(self.redis.hget(key, "attempted_at"))
            job_id = self._find_lost_job(list_id, digest, float(attempted)) if attempted else None
            if job_id is None:
                # Kept before the request leaves: a retry knows to look for its job.
                now = self._now()
                pipe = self.redis.pipeline()
                pipe.hset(key, "attempted_at", now)
                pipe.expire(key, deadline)
                pipe.hset(pending, digest, now)
                pipe.expire(pending, deadline)
                pipe.execute()
                try:
                    job_id = self._upload(list_id, rows, digest)
                except (ApiError, RetryableApiError) as exc:
                    if isinstance(exc, NotYet) or 400 <= (exc.status or 0) < 500:
                        # Never sent (our rate limiter) or refused: no job to look for.
                        self.redis.hdel(key, "attempted_at")
                        self.redis.hdel(pending, digest)
                    raise
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"job_id": job_id, "state": "submitted", "polls": 0})
            pipe.expire(key, deadline)
            pipe.sadd(self._keys.known_jobs(list_id), job_id)
            pipe.expire(self._keys.known_jobs(list_id), deadline)
            pipe.hdel(pending, digest)
            pipe.execute()
            return job_id
        finally:
            self.redis.delete(lease)

    def _find_lost_job(self, list_id: str, digest: str, attempted_at: float) -> str | None:
        """The job an earlier attempt of this upload made, if the list's jobs show it
        beyond doubt; None means upload again (an overwrite of the same rows is harmless).

        ``GET lists/call-lists/jobs`` names no file and no uploader [A], so a job is
        told apart by list and time only: it must be the one job on this list, submitted
        around the attempt, that cxsweep does not know the id of, while no other upload
        to the list was in flight at that time (whose job it could be).
        """
        window = UPLOAD_CLAIM_SECONDS + JOB_CLOCK_SKEW
        in_flight = [
            float(text(when))
            for other, when in self.redis.hgetall(self._keys.uploads_pending(list_id)).items()
            if text(other) != digest
        ]
        if any(abs(when - attempted_at) <= window for when in in_flight):
            log.info("list %s: another upload was in flight: uploading again", list_id)
            return None
        known = {text(j) for j in self.redis.smembers(self._keys.known_jobs(list_id))}
        try:
            jobs = list(self._iter_jobs())
        except MalformedResponse as exc:
            log.warning("list %s: %s: uploading again", list_id, exc)
            return None
        found = [
            str(job["jobId"])
            for job in jobs
            if str(job.get("listId")) == list_id
            and str(job.get("jobId")) not in known
            and _submitted_within(job.get("submitDate"), attempted_at - JOB_CLOCK_SKEW, window * 2)
        ]
        if len(found) != 1:
            log.info(
                "list %s: %d unknown job(s) near the lost upload: uploading again",
                list_id,
                len(found),
            )
            return None
        log.info("list %s: upload job %s was lost with its answer: following it", list_id, found[0])
        return found[0]

    def _iter_jobs(self) -> Iterator[dict[str, Any]]:
        """Every upload job ``GET lists/call-lists/jobs`` shows. Assumed: no query
        parameters, ``_links.next`` pages (the answer carries ``_links`` [A])."""
        url: str | None = f"{self.api_base()}/lists/call-lists/jobs"
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_JOB_PAGES:
            seen.add(url)
            call = f"GET {path_of(url)}"
            body = self._call("jobs", call, "GET", url)
            jobs = body.get("uploadJobs") if isinstance(body, dict) else None
            if not isinstance(jobs, list) or not all(
                isinstance(j, dict) and isinstance(j.get("jobId"), int | str) for j in jobs
            ):
                raise MalformedResponse(f"{call}: 'uploadJobs' is missing or malformed")
            yield from jobs
            if not jobs:
                return
            url = self._next_link(body)

    def _expiration_date(self, list_id: str) -> str:
        """Uploads must carry one: the list's own, else CXONE_LIST_EXPIRATION_DAYS ahead."""
        key = self._keys.list_expiry(list_id)
        own = text(self.redis.get(key))
        if own:
            try:
                when = datetime.datetime.fromisoformat(own.replace("Z", "+00:00"))
            except ValueError:
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=datetime.UTC)
                if when > datetime.datetime.now(datetime.UTC):
                    return own
        days = datetime.timedelta(days=self.settings.cxone_list_expiration_days)
        # Assumed: a date in ISO form (as the open client that uploads sends it).
        return (datetime.datetime.now(datetime.UTC) + days).date().isoformat()

    def _upload(self, list_id: str, rows: list[dict[str, Any]], digest: str) -> str:
        url = f"{self._list_url(list_id)}/upload"
        call = f"POST {path_of(url)}"
        body: dict[str, Any] = {
            "listFile": base64.b64encode(self.to_csv(rows)).decode("ascii"),
            "fileName": f"cxsweep-{list_id}-{digest[:12]}.csv",
            # Assumed: overwrite replaces the records with the same external id.
            "forceOverwrite": True,
            "expirationDate": self._expiration_date(list_id),
            # Not a safeguard: a skill already running dials what is uploaded to it
            # (docs/cxone.md); false only keeps a paused skill paused.
            "startSkill": False,
            "sendEmail": False,
        }
        if self.settings.cxone_skill_id:
            body["skillId"] = int(self.settings.cxone_skill_id)
        answer = self._call("upload", call, "POST", url, json_body=body)
        job_id = answer.get("jobId") if isinstance(answer, dict) else None
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or job_id == "":
            raise MalformedResponse(f"{call}: answer has no 'jobId'")
        return str(job_id)

    def _job(self, job_id: str) -> dict[str, Any]:
        url = f"{self.api_base()}/lists/call-lists/jobs/{quote(job_id, safe='')}"
        call = f"GET {path_of(url)}"
        body = self._call("job", call, "GET", url)
        jobs = body.get("uploadJobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list) or not jobs or not all(isinstance(j, dict) for j in jobs):
            raise MalformedResponse(f"{call}: 'uploadJobs' is missing or empty")
        for job in jobs:
            if str(job.get("jobId")) == job_id:
                return job
        raise MalformedResponse(f"{call}: 'uploadJobs' does not name job {job_id}")


def _submitted_within(value: Any, start: float, seconds: float) -> bool:
    """Whether a job's ``submitDate`` (Assumed: ISO 8601, UTC unless it says) falls in
    ``seconds`` from ``start``."""
    when = platform_time(value)
    return when is not None and start <= when.timestamp() <= start + seconds
