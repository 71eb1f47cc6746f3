"""The simulator's state and its in-process control: everything behind the one lock
(lists, calling lists, tokens, jobs, faults, statistics) and the methods ``/_sim/`` mirrors.
The route mixins (v2, CXone, look-up, faults, control) build on this class."""

from __future__ import annotations

import copy
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from devtools import seed as seed_data
from devtools.simulator.config import (
    CXONE_PHONE_COLUMNS,
    CXONE_PHONE_RE,
    REQUEST_LOG_SIZE,
    FaultRule,
    SimConfig,
)
from devtools.simulator.store import CallingList, ContactList, messy_call_records, new_stats
from devtools.simulator.wire import Request, Response

#: called with (route kind, route parameters, request, response) when a route served a call
AnswerHook = Callable[[str, Mapping[str, str], Request, Response], None]


class SimulatorState:
    """The state every route works on; all of it behind ``_lock``, never held while sleeping."""

    def __init__(self, config: SimConfig | None = None) -> None:
        initial = copy.deepcopy(config) if config is not None else SimConfig()
        initial.validate()
        self._initial = initial
        self._config = copy.deepcopy(initial)
        self._lock = threading.Lock()
        self._lists: dict[str, ContactList] = {}
        self._tokens: dict[str, float] = {}
        self._faults: list[FaultRule] = []
        self._webhooks: list[dict[str, Any]] = []
        self._seen: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._stats = new_stats()
        self._in_flight = 0
        # CXone state
        self._call_lists: dict[str, CallingList] = {}
        self._refresh_tokens: dict[str, float] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._job_seq = 0
        self._dnc: dict[str, dict[str, dict[str, Any]]] = {}
        self._scrubbed: dict[str, list[int]] = {}
        self._running_skills: set[int] = set()
        self._remove_failures: dict[str, str] = {}
        self._upload_failures: dict[str, str] = {}
        self._jwt_key = secrets.token_bytes(32)
        self._generation = 0
        self._rng = random.Random(initial.seed)
        self._bucket = 0.0
        self._bucket_at = time.monotonic()
        self._reset_bucket()
        self._answer_hooks: list[AnswerHook] = []

    # -- in-process control (mirrors /_sim/)

    @property
    def config(self) -> SimConfig:
        return copy.deepcopy(self._config)

    def configure(self, **changes: Any) -> SimConfig:
        with self._lock:
            self._apply_config(self._config.updated(changes))
            return copy.deepcopy(self._config)

    def reset(self, lists: Mapping[str, Mapping[str, Any]] | None = None, **changes: Any) -> None:
        """Back to the constructor's config plus ``changes``; no lists, tokens, faults, stats."""
        new_config = self._initial.updated(changes)
        built = {
            list_id: self._build_list(list_id, spec) for list_id, spec in (lists or {}).items()
        }
        with self._lock:
            self._lists.clear()
            self._tokens.clear()
            self._faults.clear()
            self._call_lists.clear()
            self._refresh_tokens.clear()
            self._jobs.clear()
            self._dnc.clear()
            self._scrubbed.clear()
            self._running_skills.clear()
            self._remove_failures.clear()
            self._upload_failures.clear()
            self._webhooks.clear()
            self._seen.clear()
            self._stats = new_stats()
            self._apply_config(new_config)
            self._rng = random.Random(new_config.seed)
            for contact_list in built.values():
                self._install_list(contact_list)

    def put_list(
        self,
        list_id: str,
        contacts: Iterable[Mapping[str, Any]] | None = None,
        *,
        count: int | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> int:
        """Create or replace a list from ``contacts`` or ``count`` seeded ones; its size."""
        spec: dict[str, Any] = {"seed": seed}
        if contacts is not None:
            spec["contacts"] = list(contacts)
        if count is not None:
            spec["count"] = count
        if name is not None:
            spec["name"] = name
        built = self._build_list(list_id, spec)
        with self._lock:
            return len(self._install_list(built).contacts)

    def get_list(self, list_id: str) -> list[dict[str, Any]]:
        """A copy of the list's current contacts in order; KeyError if there is none."""
        with self._lock:
            return [dict(c) for c in self._lists[list_id].contacts.values()]

    def list_ids(self) -> list[str]:
        with self._lock:
            return list(self._lists)

    def delete_list(self, list_id: str) -> bool:
        with self._lock:
            return self._lists.pop(list_id, None) is not None

    def add_faults(self, rules: Iterable[Mapping[str, Any]]) -> None:
        parsed = [FaultRule.parse(rule) for rule in rules]
        with self._lock:
            self._faults.extend(parsed)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._faults]

    def revoke_tokens(self) -> int:
        with self._lock:
            revoked = len(self._tokens)
            self._tokens.clear()
            return revoked

    # -- in-process control of the CXone side

    def put_call_list(
        self,
        list_id: str,
        records: Iterable[Mapping[str, Any]] | None = None,
        *,
        count: int | None = None,
        seed: int = 0,
        name: str | None = None,
        external_id_column: str = "ExternalId",
        phone_columns: Sequence[str] = CXONE_PHONE_COLUMNS,
        status: str = "Active",
        skill_id: int = 4001,
        expiration: str | None = None,
    ) -> int:
        """Create or replace a calling list from ``records`` or ``count`` seeded ones."""
        if records is None:
            if count is None:
                raise ValueError("give records or a count")
            records = messy_call_records(list_id, count, seed, phone_columns)
        built = CallingList(
            list_id,
            name or f"Calling list {list_id}",
            records,
            external_id_column,
            phone_columns,
            status=status,
            skill_id=skill_id,
            expiration=expiration,
        )
        with self._lock:
            if any(
                cl.name == built.name and cl.list_id != list_id for cl in self._call_lists.values()
            ):
                raise ValueError(f"a calling list is already named {built.name!r}")
            self._call_lists[list_id] = built
            return len(built.records)

    def get_call_list(self, list_id: str) -> list[dict[str, Any]]:
        """The calling list's records now (due upload jobs applied); KeyError if none."""
        with self._lock:
            self._settle_jobs()
            return [dict(r) for r in self._call_lists[list_id].records.values()]

    def fail_records(
        self,
        *,
        remove: Mapping[str, str] | None = None,
        upload: Mapping[str, str] | None = None,
    ) -> None:
        """Make removeProspects / upload jobs refuse these external ids with these codes
        (an empty code: removeProspects names the record in neither of its lists)."""
        with self._lock:
            self._remove_failures.update(remove or {})
            self._upload_failures.update(upload or {})

    def add_dnc_group(
        self,
        group_id: str,
        scrubbed_skills: Iterable[int] = (4001,),
        numbers: Mapping[str, str | None] | Iterable[str] = (),
    ) -> None:
        """A DNC group blocking ``scrubbed_skills``, holding ``numbers`` (digits, or
        digits to an ``expiredDate``) already."""
        held = dict(numbers) if isinstance(numbers, Mapping) else dict.fromkeys(numbers)
        with self._lock:
            group = self._dnc.setdefault(str(group_id), {})
            for phone, expires in held.items():
                group[phone] = {"expiredDate": expires, "seeded": True}
            self._scrubbed[str(group_id)] = list(scrubbed_skills)

    def set_skill_running(self, skill_id: int, running: bool = True) -> None:
        with self._lock:
            (self._running_skills.add if running else self._running_skills.discard)(skill_id)

    def dnc_numbers(self, group_id: str) -> list[str]:
        with self._lock:
            return list(self._dnc.get(str(group_id), {}))

    def revoke_refresh_tokens(self) -> int:
        with self._lock:
            revoked = len(self._refresh_tokens)
            self._refresh_tokens.clear()
            return revoked

    def jobs(self) -> list[dict[str, Any]]:
        """Upload jobs so far: id, list, rows, done, failed records."""
        with self._lock:
            self._settle_jobs()
            return [
                {
                    "jobId": job["jobId"],
                    "listId": job["listId"],
                    "rows": len(job["rows"]),
                    "isComplete": job["done"],
                    "expirationDate": job["expirationDate"],
                    "failedRecords": list(job["failed"]),
                }
                for job in self._jobs.values()
            ]

    def issue_token(self) -> str:
        """A valid bearer token without a round trip (not counted in stats)."""
        with self._lock:
            return self._grant(self._config)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._stats)

    def requests_seen(self) -> list[dict[str, Any]]:
        """The API requests received (newest last, control calls left out): ``method``,
        ``path`` as sent (query cut off), ``host``, ``authorization`` (whether an
        Authorization header came with it; never its value) and the answer's ``status``
        (0: connection dropped; None: not answered yet)."""
        with self._lock:
            return [dict(seen) for seen in self._seen]

    def webhooks(self) -> list[dict[str, Any]]:
        """What was POSTed to ``/_sim/webhook``: ``{"body", "raw", "headers", "received_at"}``.

        A stand-in for the run-report aggregator, so a sweep's webhook can be checked
        (signature included: ``raw`` is the exact bytes) without another server.
        """
        with self._lock:
            return copy.deepcopy(self._webhooks)

    # -- internals: state

    def _reset_bucket(self) -> None:
        cfg = self._config
        self._bucket = float(cfg.rate_burst if cfg.rate_burst is not None else cfg.rate_limit)
        self._bucket_at = time.monotonic()

    def _apply_config(self, new: SimConfig) -> None:
        old = self._config
        self._config = new
        if (old.rate_limit, old.rate_burst) != (new.rate_limit, new.rate_burst):
            self._reset_bucket()
        if old.seed != new.seed:
            self._rng = random.Random(new.seed)

    @staticmethod
    def _build_list(list_id: str, spec: Mapping[str, Any]) -> ContactList:
        """Build a list from a spec outside the lock: a million contacts take seconds."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"list {list_id!r}: expected an object")
        name = spec.get("name") or f"Contact list {list_id}"
        if not isinstance(name, str):
            raise ValueError(f"list {list_id!r}: name must be a string")
        if spec.get("contacts") is not None:
            contacts = spec["contacts"]
            if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
                raise ValueError(f"list {list_id!r}: contacts must be a list of objects")
            return ContactList(list_id, name, contacts)
        count, seed = spec.get("count"), spec.get("seed", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"list {list_id!r}: give 'contacts' or a non-negative 'count'")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"list {list_id!r}: seed must be an integer")
        return ContactList(list_id, name, seed_data.messy_contacts(list_id, count, seed))

    def _install_list(self, built: ContactList) -> ContactList:
        self._generation += 1
        existing = self._lists.get(built.list_id)
        built.generation = self._generation
        built.rank = existing.rank if existing is not None else self._generation
        self._lists[built.list_id] = built
        return built

    def _grant(self, cfg: SimConfig) -> str:
        now = time.monotonic()
        if len(self._tokens) > 10_000:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + float(cfg.token_lifetime)
        return token

    def _take_rate_token(self, cfg: SimConfig) -> int | None:
        """None if the request may proceed, else the Retry-After in whole seconds."""
        if cfg.rate_limit <= 0:
            return None
        burst = float(cfg.rate_burst if cfg.rate_burst is not None else cfg.rate_limit)
        burst = max(burst, 1.0)
        now = time.monotonic()
        self._bucket = min(burst, self._bucket + (now - self._bucket_at) * cfg.rate_limit)
        self._bucket_at = now
        if self._bucket >= 1.0:
            self._bucket -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._bucket) / cfg.rate_limit))

    def _authorized(self, req: Request) -> bool:
        header = req.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            expires = self._tokens.get(token.strip())
            return expires is not None and expires > time.monotonic()

    def _settle_jobs(self) -> None:
        """Apply every upload job whose time has come (caller holds the lock)."""
        now = time.monotonic()
        for job in self._jobs.values():
            if job["done"] or job["due"] > now:
                continue
            job["done"] = True
            job["completedDate"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            calling_list = self._call_lists.get(job["listId"])
            for row in job["rows"]:
                ext = (row.get(calling_list.external_id_column) if calling_list else "") or ""
                code = self._upload_failures.get(ext)
                if calling_list is None:
                    code = "ListNotFound"
                elif code is None and not ext:
                    code = "MissingExternalId"
                elif code is None and any(
                    # A blank cell (whitespace too) is an empty phone, not a bad one.
                    (row.get(c) or "").strip()
                    and not CXONE_PHONE_RE.match((row.get(c) or "").strip())
                    for c in calling_list.phone_columns
                ):
                    code = "InvalidPhoneNumber"
                elif code is None and ext in calling_list.records and not job["force"]:
                    code = "DuplicateExternalId"
                if code is not None:
                    job["failed"].append({"externalId": ext, "resultCode": code})
                    self._stats["upload_failed"] += 1
                    continue
                assert calling_list is not None
                # An upload overwrites the whole record with the file's columns.
                calling_list.records[ext] = {k: (v or "") for k, v in row.items() if k}
                uploaded = self._stats["uploaded"]
                uploaded[ext] = uploaded.get(ext, 0) + 1

    def _route_handler(self, kind: str) -> Callable[[dict[str, str], Request], Response]:
        """The method that serves a route kind: ``_api_<kind>`` on one of the route mixins."""
        handler: Callable[[dict[str, str], Request], Response] = getattr(self, f"_api_{kind}")
        return handler
