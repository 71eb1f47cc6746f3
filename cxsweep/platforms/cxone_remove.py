"""Removing CXone records: ``removeProspects`` by list name, the numbers pushed to the
do-not-call group first, and removals the answer leaves ambiguous read back from the list.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from cxsweep.errors import MalformedResponse, NotFound
from cxsweep.platforms.base import WriteOutcome, writable_ids
from cxsweep.platforms.cxone_download import ListDownload
from cxsweep.platforms.cxone_session import (
    DISCOVERY_TTL,
    as_number,
    phone_digits,
    platform_time,
)
from cxsweep.platforms.http import (
    path_of,
)
from cxsweep.redisconn import text
from cxsweep.runs import keys

log = logging.getLogger(__name__)


def _is_not_found(code: str) -> bool:
    # Assumed: the platform's per-record code for an absent record says "not found" in
    # some spelling (NotFound, RECORD_NOT_FOUND, "Record not found").
    return "notfound" in re.sub(r"[^a-z]", "", code.lower())


class ListRemovals(ListDownload):
    """Removals of rejected records, and the DNC push before them."""

    # --- removing ---------------------------------------------------------------------

    def _list_name(self, list_id: str) -> str:
        """removeProspects addresses a list by name: cached from reads, else asked for."""
        key = self._keys.list_name(list_id)
        name = text(self.redis.get(key))
        if name:
            return name
        url = self._list_url(list_id)
        call = f"GET {path_of(url)}"
        body = self._call("read", call, "GET", url, params={"includeRecords": "false"})
        wrapped = body.get("resultSet") if isinstance(body, dict) else None
        result = wrapped if isinstance(wrapped, dict) else body
        found = result.get("listName") if isinstance(result, dict) else None
        if not isinstance(found, str) or not found:
            raise MalformedResponse(f"{call}: answer has no 'listName'")
        self.redis.set(key, found, ex=DISCOVERY_TTL)
        return found

    def remove_contacts(self, list_id: str, contact_ids: Sequence[str]) -> WriteOutcome:
        if len(contact_ids) > self.remove_batch_size:
            raise ValueError(f"at most {self.remove_batch_size} records per removeProspects")
        contact_ids, refused = writable_ids(contact_ids)
        outcome = WriteOutcome(failed=refused)
        if not contact_ids:
            return outcome
        name = self._list_name(list_id)
        if self.settings.cxone_dnc_group_id:
            # Before the removal: a retry after a failed removal pushes again (harmless),
            # whereas pushing after could lose the numbers of records already gone.
            _, suppressed = self.push_dnc(list_id, contact_ids)
        else:
            suppressed = []
        url = f"{self.api_base()}/lists/call-lists/{quote(name, safe='')}/removeProspects"
        call = f"DELETE {path_of(url)}"
        body = self._call(
            "remove",
            call,
            "DELETE",
            url,
            json_body={
                "prospectsToRemove": [{"externalId": as_number(cid)} for cid in contact_ids]
            },
        )
        since = self._now()
        if not isinstance(body, dict):
            raise MalformedResponse(f"{call}: answer is not a JSON object")
        ok, failed = body.get("successfulRecords") or [], body.get("failedRecords") or []
        if not isinstance(ok, list) or not isinstance(failed, list):
            raise MalformedResponse(f"{call}: successfulRecords/failedRecords are not lists")
        wanted = set(contact_ids)
        answered: set[str] = set()
        for item in ok:
            cid = str(item.get("externalId")) if isinstance(item, dict) else None
            if cid in wanted and cid not in answered:
                answered.add(cid)
                outcome.done.append(cid)
        for item in failed:
            cid = str(item.get("externalId")) if isinstance(item, dict) else None
            if cid not in wanted or cid in answered:
                continue
            answered.add(cid)
            code = str(item.get("resultCode") or item.get("error") or "failed")
            if _is_not_found(code):
                outcome.missing.append(cid)
            else:
                outcome.failed[cid] = f"removeProspects: {code}"
        unanswered = [cid for cid in contact_ids if cid not in answered]
        if unanswered:
            # Neither list names them: the list itself says whether they are gone. (Until
            # it has been read this raises NotYet; the retry sends the batch again, and
            # records removed meanwhile come back as not found.)
            observed = self.read_back(list_id, unanswered, since)
            for cid in unanswered:
                if observed.get(cid) is None:
                    outcome.done.append(cid)
                else:
                    outcome.failed[cid] = (
                        "removeProspects gave no result and the record is still in the list"
                    )
        if suppressed:
            # Counted for the records this batch settled (removed, or gone already).
            settled = set(outcome.done) | set(outcome.missing)
            count = sum(1 for cid in suppressed if cid in settled)
            if count:
                outcome.counts[keys.ALREADY_SUPPRESSED] = count
        return outcome

    def push_dnc(self, list_id: str, contact_ids: Sequence[str]) -> tuple[int, list[str]]:
        """Add the numbers of ``contact_ids`` (as read) to the DNC group; how many numbers
        were sent, and the contacts whose every number the group held already.

        With ``CXONE_DNC_SEARCH`` each number is first looked up (``POST dnc-groups/
        search``): one the group holds (unexpired) is not sent again, so an entry an
        administrator made (its expiry, its collection date) is left as it is. A contact
        settled once is not looked up or pushed again when its removal is retried.
        Per-record refusals of the push are logged, not raised: the push is a courtesy
        on top of the removal, which must not wait on it.
        """
        state_key = self._keys.dnc_state(list_id)
        settled = dict(
            zip(contact_ids, self.redis.hmget(state_key, list(contact_ids)), strict=True)
        )
        raw = self.redis.hmget(self._keys.phones(list_id), list(contact_ids))
        numbers_of: dict[str, list[str]] = {}
        for cid, value in zip(contact_ids, raw, strict=True):
            if settled[cid] is None:
                digits = (phone_digits(p) for p in json.loads(text(value) or "[]"))
                numbers_of[cid] = list(dict.fromkeys(d for d in digits if len(d) >= 7))
        numbers = list(dict.fromkeys(n for found in numbers_of.values() for n in found))
        held = self._held_by_group(numbers) if self.settings.cxone_dnc_search else set()
        to_push = [n for n in numbers if n not in held]
        if to_push:
            self._add_to_group(to_push)
        states = {
            cid: "suppressed" if found and all(n in held for n in found) else "pushed"
            for cid, found in numbers_of.items()
        }
        if states:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(state_key, mapping=states)  # type: ignore[arg-type]
            pipe.expire(state_key, self.settings.run_deadline_seconds)
            pipe.execute()
        suppressed = [
            cid
            for cid in contact_ids
            if states.get(cid, text(settled[cid]) if settled[cid] else "") == "suppressed"
        ]
        return len(to_push), suppressed

    def _add_to_group(self, numbers: Sequence[str]) -> None:
        group = quote(self.settings.cxone_dnc_group_id, safe="")
        url = f"{self.api_base()}/dnc-groups/{group}/records"
        call = f"POST {path_of(url)}"
        body = self._call(
            "dnc",
            call,
            "POST",
            url,
            json_body={"dncGroupRecords": [{"phoneNumber": as_number(n)} for n in numbers]},
        )
        result = body.get("resultSet") if isinstance(body, dict) else None
        errors = result.get("errorCount") if isinstance(result, dict) else None
        if isinstance(errors, int) and errors:
            log.warning("%s: %d of %d numbers refused by DNC group", call, errors, len(numbers))

    def _held_by_group(self, numbers: Sequence[str]) -> set[str]:
        """Which ``numbers`` the configured DNC group holds, unexpired.

        ``POST dnc-groups/search?phoneNumber=`` answers ``searchResults[{dncGroupId,
        formattedPhone, expiredDate, ...}]`` [A]. Assumed: the query takes the digits as
        the group stores them, and a number in no group answers an empty list (or 404).
        Whatever is unclear (an answer of another shape, another number, an expiry that
        does not parse) counts as not held: the number is pushed, as without the search.
        """
        group = self.settings.cxone_dnc_group_id
        url = f"{self.api_base()}/dnc-groups/search"
        call = f"POST {path_of(url)}"
        now = datetime.datetime.now(datetime.UTC)
        held: set[str] = set()
        for number in numbers:
            try:
                body = self._call("dnc_search", call, "POST", url, params={"phoneNumber": number})
            except NotFound:
                continue
            rows = body.get("searchResults") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                log.warning("%s: no 'searchResults' list: pushing the number anyway", call)
                continue
            for row in rows:
                if not isinstance(row, dict) or str(row.get("dncGroupId")) != group:
                    continue
                shown = phone_digits(row.get("formattedPhone"))
                if shown and shown != number:
                    continue
                if _unexpired(row.get("expiredDate"), now):
                    held.add(number)
                    break
        return held


def _unexpired(value: Any, now: datetime.datetime) -> bool:
    """A DNC record's ``expiredDate``: none means it never expires [A]."""
    if value is None or value == "":
        return True
    when = platform_time(value)
    return when is not None and when > now
