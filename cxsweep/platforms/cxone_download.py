"""Reading a CXone calling list: the list of lists, the whole-list download parsed as it
streams in and served page by page from a spool file, the checks of what would keep
dialing (a running skill, a skill not scrubbed against the DNC group), and the read-back
that verifies writes against the list itself.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import ijson
import requests

from cxsweep.errors import (
    ApiError,
    MalformedResponse,
    NotFound,
    NotYet,
    RetryableApiError,
)
from cxsweep.platforms.base import Page
from cxsweep.platforms.cxone_session import DISCOVERY_TTL, CxoneSession
from cxsweep.platforms.http import (
    path_of,
    require_same_origin,
    short,
)
from cxsweep.redisconn import text

log = logging.getLogger(__name__)

DEFAULT_EXPIRES_IN = 3600.0
MAX_LIST_PAGES = 10_000
# NICE caps a calling list at 256 MB and a record at 512 characters (of data: the values,
# not the JSON around them). A record gets twice that as slack; the answer as a whole is
# also capped in bytes, against an endless stream.
MAX_RECORD_CHARS = 1024
MAX_LIST_CHARS = 256 * 1024 * 1024
MAX_ANSWER_BYTES = 1024 * 1024 * 1024
# A download is spooled here as JSON lines (one record a line) and paged from the file;
# a spool left behind by a dead worker is swept away after a day.
SPOOL_DIR = Path(tempfile.gettempdir()) / "cxsweep-cxone"
SPOOL_MAX_AGE = 24 * 3600
_SPOOL_TOKEN = re.compile(r"^[0-9a-f]{16}$")
# One worker reads the list back for every write waiting for it; a dead one frees it.
READ_BACK_LOCK_SECONDS = 600


class _AnswerReader:
    """A streamed answer as a file for ijson: capped, and a connection that breaks off
    is a retryable failure like any other."""

    def __init__(self, call: str, response: requests.Response) -> None:
        self._call = call
        self._chunks = response.iter_content(chunk_size=256 * 1024)
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson's probe for bytes or text
            return b""
        try:
            chunk = next(self._chunks, b"")
        except requests.RequestException as exc:
            raise RetryableApiError(f"{self._call}: the answer broke off ({short(exc)})") from None
        self._size += len(chunk)
        if self._size > MAX_ANSWER_BYTES:
            raise MalformedResponse(f"{self._call}: answer exceeds {MAX_ANSWER_BYTES} bytes")
        return chunk


class ListDownload(CxoneSession):
    """The reads of a calling list, and the read-back of writes."""

    # --- reading ----------------------------------------------------------------------

    def page_cursor(self, list_id: str, page_no: int, page_size: int) -> str:
        raise NotImplementedError("CXone answers a list whole: pages are not addressable")

    def iter_lists(self) -> Iterator[dict[str, Any]]:
        """The tenant's calling lists; Inactive ones only with CXONE_INCLUDE_INACTIVE."""
        url: str | None = f"{self.api_base()}/lists/call-lists"
        params: dict[str, Any] | None = {"top": self.settings.cxone_page_size}
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_LIST_PAGES:
            seen.add(url)
            call = f"GET {path_of(url)}"
            body = self._call("lists", call, "GET", url, params=params)
            lists = body.get("callingLists") if isinstance(body, dict) else None
            if not isinstance(lists, list) or not all(
                isinstance(item, dict) and isinstance(item.get("listId"), str | int)
                for item in lists
            ):
                raise MalformedResponse(f"{call}: 'callingLists' is missing or malformed")
            for item in lists:
                if item.get("status") == "Inactive" and not self.settings.cxone_include_inactive:
                    continue
                yield {**item, "id": str(item["listId"]), "name": str(item.get("listName", ""))}
            if not lists:
                return
            url = self._next_link(body)
            params = None  # the next link carries its own query

    def _next_link(self, body: Mapping[str, Any]) -> str | None:
        links = body.get("_links")
        nxt = links.get("next") if isinstance(links, dict) else None
        if not isinstance(nxt, str) or not nxt:
            return None
        url = urljoin(self.api_base() + "/", nxt)
        return require_same_origin("GET call-lists", "_links.next", url, self.api_base())

    def read_page(self, list_id: str, cursor: str | None) -> Page:
        """Page ``cursor`` of the list, from a local spool of one download.

        CXone answers a list whole (up to 500,000 records). The answer is parsed as it
        streams in and written to a spool file of JSON lines; pages are then served from
        the file, so neither the worker nor Redis ever holds the list. The cursor names
        the spool, how many records were served and where the next page starts; a task on
        another host (or after the spool was swept away) downloads again and skips that
        many records.
        """
        token, served, offset = self._parse_cursor(cursor)
        total: int | None = None
        warnings: tuple[str, ...] = ()
        path = SPOOL_DIR / f"{token}.jsonl"
        if not token or not path.exists():
            token, total, warnings = self._download(list_id)
            path = SPOOL_DIR / f"{token}.jsonl"
            offset = 0
            with path.open("rb") as spool:
                for _ in range(served):
                    spool.readline()
                offset = spool.tell()
        records: list[dict[str, Any]] = []
        with path.open("rb") as spool:
            spool.seek(offset)
            for _ in range(self.settings.cxone_page_size):
                line = spool.readline()
                if not line:
                    break
                records.append(json.loads(line))
            offset = spool.tell()
            more = bool(spool.read(1))
        if self.settings.cxone_dnc_group_id and records:
            self._remember_phones(list_id, records)
        served += len(records)
        if not more:
            path.unlink(missing_ok=True)
            return Page(contacts=records, next_cursor=None, total=total, warnings=warnings)
        cursor = f"{token}:{served}:{offset}"
        return Page(contacts=records, next_cursor=cursor, total=total, warnings=warnings)

    @staticmethod
    def _parse_cursor(cursor: str | None) -> tuple[str, int, int]:
        if not cursor:
            return "", 0, 0
        token, _, rest = cursor.partition(":")
        served, _, offset = rest.partition(":")
        if not _SPOOL_TOKEN.match(token) or not served.isdigit() or not offset.isdigit():
            raise ApiError(f"not a CXone page cursor: {cursor[:40]!r}")
        return token, int(served), int(offset)

    def _download(self, list_id: str) -> tuple[str, int, tuple[str, ...]]:
        """Stream the list into a new spool file; its token, how many records, and the
        warnings about the list."""
        SPOOL_DIR.mkdir(mode=0o700, exist_ok=True)
        cutoff = time.time() - SPOOL_MAX_AGE
        for old in SPOOL_DIR.iterdir():
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        token = secrets.token_hex(8)
        part = SPOOL_DIR / f"{token}.part"
        info: dict[str, Any] = {}
        count = 0
        try:
            # The records hold personal data: readable by this user only.
            part.touch(mode=0o600)
            with part.open("w", encoding="utf-8") as out:
                for record in self.stream_list(list_id, info):
                    out.write(json.dumps(record, separators=(",", ":")) + "\n")
                    count += 1
            part.rename(SPOOL_DIR / f"{token}.jsonl")
        finally:
            part.unlink(missing_ok=True)
        warnings = self._remember_list(list_id, info)
        return token, count, warnings

    def stream_list(self, list_id: str, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The list's records as the download answer arrives (``GET lists/call-lists/
        {listId}?includeRecords=true``, parsed with ijson): memory stays flat however
        long the list. ``info`` receives the answer's other fields once it is read."""
        url = self._list_url(list_id)
        call = f"GET {path_of(url)}"
        params = {"finalized": "false", "includeRecords": "true"}
        require_same_origin(call, "the request URL", url, self.api_base())
        response = self.http.authorized(
            self.tokens, "read", call, "GET", url, params=params, stream=True
        )
        reader = _AnswerReader(call, response)
        builder: ijson.ObjectBuilder | None = None
        count = chars = 0
        found_records = False
        skills: list[str] = []
        try:
            for prefix, event, value in ijson.parse(reader, use_float=True):
                # Assumed: the list is wrapped in "resultSet" (the schema says so); a bare
                # object is accepted too.
                field = prefix[len("resultSet.") :] if prefix.startswith("resultSet.") else prefix
                if builder is not None:
                    builder.event(event, value)
                    if field == "contactRecords.item" and event == "end_map":
                        record = builder.value
                        builder = None
                        size = self._check_record(call, count, record)
                        count += 1
                        chars += size
                        if chars > MAX_LIST_CHARS:
                            raise MalformedResponse(
                                f"{call}: the list holds more than {MAX_LIST_CHARS} characters"
                            )
                        yield record
                    continue
                if field == "contactRecords.item":
                    if event != "start_map":
                        raise MalformedResponse(f"{call}: record #{count} is not an object")
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                elif field == "contactRecords" and event == "start_array":
                    found_records = True
                elif field == "skills.item.skillId" and event in ("number", "string"):
                    skills.append(str(value))  # Assumed: a list's skills carry skillId
                elif field in ("listName", "listExpirationDate", "status", "totalRecords"):
                    info[field] = value
        except ijson.JSONError:
            raise MalformedResponse(f"{call}: answer is not valid JSON") from None
        finally:
            response.close()
        if not found_records:
            raise MalformedResponse(f"{call}: 'contactRecords' is missing or not a list")
        total = info.get("totalRecords")
        if isinstance(total, int) and total != count:
            # A short answer would sweep part of the list as if it were all of it.
            raise MalformedResponse(f"{call}: {total} records announced, {count} returned")
        info["skills"] = skills
        info["count"] = count

    def _remember_list(self, list_id: str, info: Mapping[str, Any]) -> tuple[str, ...]:
        """What writes need later (the name for removeProspects, the expiration date for
        uploads); the warnings about what would keep dialing, logged and returned for the
        run to keep and report."""
        for field, key in (
            ("listName", self._keys.list_name(list_id)),
            ("listExpirationDate", self._keys.list_expiry(list_id)),
        ):
            value = info.get(field)
            if isinstance(value, str) and value:
                self.redis.set(key, value, ex=DISCOVERY_TTL)
        skills = set(info.get("skills") or ())
        if self.settings.cxone_skill_id:
            skills.add(self.settings.cxone_skill_id)
        warnings = [self._check_running(list_id, skill) for skill in sorted(skills)]
        if self.settings.cxone_dnc_group_id and skills:
            warnings.append(self._check_scrubbed(list_id, skills))
        shown = tuple(w for w in warnings if w)
        for warning in shown:
            log.warning("%s", warning)
        return shown

    def _check_running(self, list_id: str, skill: str) -> str | None:
        """A warning when the list's skill is running: uploads to it are dialed whatever
        ``startSkill`` says. Assumed: ``GET skills/{id}`` answers ``skills[0].isRunning``
        (an open client reads that field); a skill that cannot be read is not judged."""
        url = f"{self.api_base()}/skills/{quote(skill, safe='')}"
        try:
            body = self._call("skill", f"GET {path_of(url)}", "GET", url)
        except NotFound:
            return None
        found = body.get("skills") if isinstance(body, dict) else None
        first = found[0] if isinstance(found, list) and found else body
        if isinstance(first, dict) and first.get("isRunning") is True:
            return (
                f"list {list_id}: skill {skill} is running: corrected records uploaded to it"
                " are dialed at once (startSkill=false does not stop it); sweep lists whose"
                " skill is paused"
            )
        return None

    def _check_scrubbed(self, list_id: str, skills: set[str]) -> str | None:
        """A warning when the list's skill is not scrubbed against the DNC group: numbers
        pushed to the group would not stop that skill from dialing them."""
        group = quote(self.settings.cxone_dnc_group_id, safe="")
        url = f"{self.api_base()}/dnc-groups/{group}/scrubbed-skills"
        body = self._call("dnc", f"GET {path_of(url)}", "GET", url)
        scrubbed = body.get("scrubbedSkills") if isinstance(body, dict) else None
        ids = {str(s.get("skillId")) for s in scrubbed or [] if isinstance(s, dict)}
        missing = sorted(skills - ids)
        if not missing:
            return None
        return (
            f"list {list_id}: skill(s) {', '.join(missing)} not scrubbed against DNC group"
            f" {self.settings.cxone_dnc_group_id}: numbers cxsweep adds to the group will"
            " not stop that skill dialing them"
        )

    def _check_record(self, call: str, position: int, record: Any) -> int:
        """Check one record; its size in characters of data."""
        if not isinstance(record, dict):
            raise MalformedResponse(f"{call}: record #{position} is not an object")
        key = record.get(self.external_id_column)
        if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
            raise MalformedResponse(
                f"{call}: record #{position} has no {self.external_id_column!r} value"
            )
        for column in self.phone_fields:
            value = record.get(column)
            if isinstance(value, int) and not isinstance(value, bool):
                # Assumed possible: a CSV-born column read back as a JSON number.
                record[column] = str(value)
            elif value is not None and not isinstance(value, str):
                raise MalformedResponse(f"{call}: record #{position} {column!r} is not a string")
        size = sum(len(str(v)) for v in record.values() if v is not None)
        if size > MAX_RECORD_CHARS:
            raise MalformedResponse(
                f"{call}: record #{position} holds {size} characters (CXone allows 512)"
            )
        return size

    def _remember_phones(self, list_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        # remove_contacts gets only external ids; the DNC push needs the numbers.
        key = self._keys.phones(list_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(
            key,
            mapping={
                self.contact_id(r): json.dumps([r.get(c) for c in self.phone_fields if r.get(c)])
                for r in records
            },
        )
        pipe.expire(key, self.settings.run_deadline_seconds)
        pipe.execute()

    # --- verifying writes -------------------------------------------------------------

    def read_back(
        self, list_id: str, ids: Sequence[str], since: float
    ) -> dict[str, dict[str, Any] | None]:
        """The phone columns of ``ids`` (None: not in the list) as a read of the list
        started after ``since`` shows them.

        CXone's write answers do not say what landed (an upload job carries only its
        status), so writes are checked against the list itself. Reading a 500,000-record
        list per upload would be ruinous: the ids wait in Redis, one worker at a time
        reads the list for every write waiting, the others raise ``NotYet`` and come back.
        """
        want, seen = self._keys.read_back(list_id, "want"), self._keys.read_back(list_id, "seen")
        self.redis.sadd(want, *ids)
        self.redis.expire(want, self.settings.run_deadline_seconds)
        found = self._seen_since(seen, ids, since)
        if found is None and self.redis.set(
            self._keys.read_back(list_id, "lock"), 1, nx=True, ex=READ_BACK_LOCK_SECONDS
        ):
            try:
                self._read_for_waiting(list_id, want, seen)
            finally:
                self.redis.delete(self._keys.read_back(list_id, "lock"))
            found = self._seen_since(seen, ids, since)
        if found is None:
            # Half as long as the last read took: hundreds of writes waiting on a long
            # list must not spin the workers (and starve the read) by asking every second.
            took = float(self.redis.get(self._keys.read_back(list_id, "took")) or 0)
            raise NotYet(
                f"waiting for a read of list {list_id} to verify {len(ids)} write(s)",
                retry_after=max(self.settings.cxone_job_poll_seconds, min(took / 2, 60.0)),
            )
        # Redis keeps what waits, not what was verified.
        self.redis.srem(want, *ids)
        self.redis.hdel(seen, *ids)
        return found

    def _seen_since(
        self, seen: str, ids: Sequence[str], since: float
    ) -> dict[str, dict[str, Any] | None] | None:
        found: dict[str, dict[str, Any] | None] = {}
        for cid, raw in zip(ids, self.redis.hmget(seen, list(ids)), strict=True):
            if raw is None:
                return None
            started, values = json.loads(raw)
            if started <= since:
                return None
            columns = None if values is None else zip(self.phone_fields, values, strict=False)
            found[cid] = None if columns is None else dict(columns)
        return found

    def _read_for_waiting(self, list_id: str, want: str, seen: str) -> None:
        started = self._now()
        pending = {text(x) for x in self.redis.smembers(want)}
        rows: dict[str, str] = {}

        def flush() -> None:
            # What was seen no longer waits: Redis holds each id once, not twice.
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(seen, mapping=rows)  # type: ignore[arg-type]
            pipe.srem(want, *rows)
            pipe.execute()
            rows.clear()

        for record in self.stream_list(list_id, {}):
            cid = self.contact_id(record)
            if cid in pending:
                pending.discard(cid)
                rows[cid] = json.dumps([started, [record.get(c) for c in self.phone_fields]])
            if len(rows) >= 1000:
                flush()
        rows.update({cid: json.dumps([started, None]) for cid in pending})
        if rows:
            flush()
        self.redis.expire(seen, self.settings.run_deadline_seconds)
        took_key = self._keys.read_back(list_id, "took")
        self.redis.set(took_key, self._now() - started, ex=self.settings.run_deadline_seconds)
