"""Removing CXone records: ``removeProspects`` by list name, the numbers pushed to the
do-not-call group first, and removals the answer leaves ambiguous read back from the list.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from urllib.parse import quote

from cxsweep.errors import (
    MalformedResponse,
)
from cxsweep.platforms.base import WriteOutcome, writable_ids
from cxsweep.platforms.cxone_download import ListDownload
from cxsweep.platforms.cxone_session import DISCOVERY_TTL, as_number, phone_digits
from cxsweep.platforms.http import (
    path_of,
)
from cxsweep.redisconn import text

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
            self.push_dnc(list_id, contact_ids)
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
        return outcome

    def push_dnc(self, list_id: str, contact_ids: Sequence[str]) -> int:
        """Add the numbers of ``contact_ids`` (as read) to the DNC group; how many sent.

        Per-record refusals (a malformed number, say) are logged, not raised: the DNC
        push is a courtesy on top of the removal, which must not wait on it.
        """
        raw = self.redis.hmget(self._keys.phones(list_id), list(contact_ids))
        numbers: dict[str, None] = {}
        for value in raw:
            for phone in json.loads(text(value) or "[]"):
                digits = phone_digits(phone)
                if len(digits) >= 7:
                    numbers[digits] = None
        if not numbers:
            return 0
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
        return len(numbers)
