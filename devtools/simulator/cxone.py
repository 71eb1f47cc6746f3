"""The NICE CXone routes (docs/cxone-api.md section 2; docs/cxone.md): the issuer and
discovery, password/refresh and access-key tokens, calling lists read whole, removeProspects,
uploads as status-only jobs and the list of jobs, DNC records and their search, scrubbed
skills and skills."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote

from devtools.simulator.config import MAX_REMOVE_PROSPECTS
from devtools.simulator.state import SimulatorState
from devtools.simulator.wire import Request, Response, error_response, invalid_client, json_response


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(claims: Mapping[str, Any], key: bytes) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class CxoneRoutes(SimulatorState):
    """The CXone issuer and Admin API."""

    def _issuer(self, req: Request) -> str:
        return f"http://{req.host}"

    def _api_oidc(self, params: dict[str, str], req: Request) -> Response:
        issuer = self._issuer(req)
        return json_response(
            200,
            {
                "issuer": issuer,
                "token_endpoint": f"{issuer}/auth/token",
                "grant_types_supported": ["password", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["HS256"],
            },
        )

    def _api_discovery(self, params: dict[str, str], req: Request) -> Response:
        tenant = (req.query.get("tenantId") or [""])[0]
        cfg = self._config
        if tenant != cfg.tenant_id:
            return json_response(404, {"error": "tenant_not_found"})
        host = self._issuer(req)
        return json_response(
            200,
            {
                "tenantId": tenant,
                "area": cfg.area,
                "domain": "niceincontact.com",
                "private": False,
                # The simulator is its own API host; a tenant's is https://api-{area}.{domain}.
                "api_endpoint": host,
                "auth_endpoint": host,
                "ui_endpoint": host,
            },
        )

    def _api_cxone_token(self, params: dict[str, str], req: Request) -> Response:
        header = req.headers.get("Authorization", "")
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        # client_secret_post, unless the app authenticates with HTTP Basic.
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return invalid_client()
        grant_type = form.get("grant_type", "")
        with self._lock:
            cfg = self._config
            expected = cfg.clients.get(client_id)
            if expected is None or not secrets.compare_digest(expected, secret):
                return invalid_client()
            now = time.monotonic()
            if grant_type == "password":
                key_secret = cfg.access_keys.get(form.get("username", ""))
                if key_secret is None or not secrets.compare_digest(
                    key_secret, form.get("password", "")
                ):
                    return json_response(400, {"error": "invalid_grant"})
                self._stats["password_grants"] += 1
                subject = form["username"]

            elif grant_type == "refresh_token":
                old = form.get("refresh_token", "")
                expires = self._refresh_tokens.pop(old, None)
                if expires is None or expires <= now:
                    return json_response(400, {"error": "invalid_grant"})
                self._stats["refresh_grants"] += 1
                subject = ""
            else:
                return json_response(400, {"error": "unsupported_grant_type"})
            token = self._grant(cfg)
            if len(self._refresh_tokens) > 10_000:
                self._refresh_tokens = {
                    t: exp for t, exp in self._refresh_tokens.items() if exp > now
                }
            refresh = secrets.token_urlsafe(32)
            self._refresh_tokens[refresh] = now + float(cfg.refresh_token_lifetime)
            self._stats["token_grants"] += 1
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
            "refresh_token": refresh,
            "refresh_token_expires_in": cfg.refresh_token_lifetime,
        }
        if subject:
            issued = int(time.time())
            payload["id_token"] = _jwt(
                {
                    "iss": self._issuer(req),
                    "aud": client_id,
                    "sub": f"user:{subject}",
                    "tenantId": cfg.tenant_id,
                    "iat": issued,
                    "exp": issued + int(cfg.token_lifetime),
                },
                self._jwt_key,
            )
        return json_response(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _api_access_key(self, params: dict[str, str], req: Request) -> Response:
        """NICE's access-key token endpoint: JSON in, no registered app."""
        try:
            body = json.loads(req.body)
            key_id, key_secret = body["accessKeyId"], body["accessKeySecret"]
            if not isinstance(key_id, str) or not isinstance(key_secret, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"error": "body must be {accessKeyId, accessKeySecret}"})
        with self._lock:
            cfg = self._config
            expected = cfg.access_keys.get(key_id)
            if expected is None or not secrets.compare_digest(expected, key_secret):
                return json_response(401, {"error": "invalid_access_key"})
            token = self._grant(cfg)
            self._stats["access_key_grants"] += 1
            self._stats["token_grants"] += 1
        issued = int(time.time())
        claims = {
            "iss": self._issuer(req),
            "sub": f"user:{key_id}",
            "tenantId": cfg.tenant_id,
            "iat": issued,
            "exp": issued + int(cfg.token_lifetime),
        }
        payload = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
            "id_token": _jwt(claims, self._jwt_key),
        }
        return json_response(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _api_scrubbed(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("scrubbed", 401)
        with self._lock:
            skills = self._scrubbed.get(params["group"])
        if skills is None:
            return json_response(404, {"error": "dnc_group_not_found"})
        rows = [{"skillId": skill, "skillName": f"Skill {skill}"} for skill in skills]
        return json_response(200, {"totalRecords": len(rows), "scrubbedSkills": rows})

    def _api_skill(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("skill", 401)
        skill = int(params["skill"])
        with self._lock:
            running = skill in self._running_skills
        row = {"skillId": skill, "skillName": f"Skill {skill}", "isRunning": running}
        return json_response(200, {"skills": [row]})

    @staticmethod
    def _skip_top(req: Request, default_top: int, max_top: int) -> tuple[int, int]:
        def one(name: str, default: int) -> int:
            raw = (req.query.get(name) or [str(default)])[0]
            if not raw.isdigit():
                raise ValueError(f"{name} must be a non-negative integer")
            return int(raw)

        skip, top = one("skip", 0), one("top", default_top)
        if top < 1:
            raise ValueError("top must be at least 1")
        return skip, min(top, max_top)

    def _links(self, req: Request, skip: int, top: int, total: int) -> dict[str, Any]:
        base = f"http://{req.host}{req.path}"
        extra = {k: v[0] for k, v in req.query.items() if k not in ("skip", "top")}

        def link(at: int) -> str:
            query = "&".join(f"{quote(k)}={quote(v)}" for k, v in {**extra}.items())
            return f"{base}?skip={at}&top={top}" + (f"&{query}" if query else "")

        return {
            "self": link(skip),
            "next": link(skip + top) if skip + top < total else None,
            "previous": link(max(0, skip - top)) if skip > 0 else None,
        }

    def _api_cxone_lists(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("cxone_lists", 401)
        try:
            skip, top = self._skip_top(req, 100, 1000)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        with self._lock:
            every = [cl.summary() for cl in self._call_lists.values()]
        return json_response(
            200,
            {
                "totalRecords": len(every),
                "_links": self._links(req, skip, top, len(every)),
                "callingLists": every[skip : skip + top],
            },
        )

    def _api_cxone_read(self, params: dict[str, str], req: Request) -> Response:
        """The whole list in one answer: the schema has only finalized and includeRecords.

        Sent as it is encoded, a slice of records at a time: half a million records in
        one ``json.dumps`` would hold the GIL (and every other request) for seconds."""
        if not self._authorized(req):
            return error_response("cxone_read", 401)
        include = (req.query.get("includeRecords") or ["true"])[0].lower() != "false"
        with self._lock:
            self._settle_jobs()
            calling_list = self._call_lists.get(params["list"])
            if calling_list is None:
                return json_response(404, {"error": "not_found"})
            # Jobs replace a record's dict, never change it: the dicts can be shared.
            records = list(calling_list.records.values()) if include else []
            result = {**calling_list.summary(), "listExpirationDate": calling_list.expiration}

        def body() -> Iterable[bytes]:
            head = json.dumps({"resultSet": result}, separators=(",", ":"))[:-2]
            yield (head + ',"contactRecords":[').encode()
            for start in range(0, len(records), 2000):
                rows = records[start : start + 2000]
                part = ",".join(json.dumps(r, separators=(",", ":")) for r in rows)
                yield ("," if start else "").encode() + part.encode()
            yield b"]}}"

        return Response(200, headers={"Content-Type": "application/json"}, chunks=body())

    def _api_remove_prospects(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("remove_prospects", 401)
        try:
            body = json.loads(req.body)
            items = body.get("prospectsToRemove") if isinstance(body, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError
        except ValueError:
            return json_response(
                400, {"error": "body must be {'prospectsToRemove': [{externalId}]}"}
            )
        if len(items) > MAX_REMOVE_PROSPECTS:
            return json_response(400, {"error": f"at most {MAX_REMOVE_PROSPECTS} prospects"})
        ok: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        with self._lock:
            calling_list = next(
                (cl for cl in self._call_lists.values() if cl.name == params["name"]), None
            )
            if calling_list is None:
                return json_response(404, {"error": "source_not_found"})
            for item in items:
                ext = str(item.get("externalId", ""))
                code = self._remove_failures.get(ext)
                if code is None and ext not in calling_list.records:
                    code = "RecordNotFound"
                if code == "":
                    continue  # named in neither list: an ambiguous answer
                if code is not None:
                    failed.append({"externalId": ext, "resultCode": code})
                    self._stats["remove_failed"] += 1
                    continue
                del calling_list.records[ext]
                ok.append({"externalId": ext, "resultCode": "Success"})
                self._stats["removed_prospects"] += 1
        return json_response(200, {"successfulRecords": ok, "failedRecords": failed})

    def _api_upload(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("upload", 401)
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict) or not isinstance(body.get("listFile"), str):
                raise ValueError("body must carry 'listFile' (base64 CSV)")
            # The fields NICE's schema requires next to listFile.
            for required, kind in (
                ("forceOverwrite", bool),
                ("expirationDate", str),
                ("startSkill", bool),
                ("sendEmail", bool),
            ):
                if not isinstance(body.get(required), kind) or body.get(required) == "":
                    raise ValueError(f"'{required}' is required")
            raw = base64.b64decode(body["listFile"], validate=True).decode("utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(raw, newline="")))
        except (ValueError, binascii.Error, UnicodeDecodeError, csv.Error) as exc:
            return json_response(400, {"error": f"bad upload: {exc}"})
        force = body["forceOverwrite"]
        with self._lock:
            calling_list = self._call_lists.get(params["list"])
            if calling_list is None:
                return json_response(404, {"error": "not_found"})
            if rows and calling_list.external_id_column not in rows[0]:
                return json_response(400, {"error": f"no {calling_list.external_id_column} column"})
            self._job_seq += 1
            job_id = str(self._job_seq)
            self._jobs[job_id] = {
                "jobId": int(job_id),
                "listId": calling_list.list_id,
                "listName": calling_list.name,
                "rows": rows,
                "force": force,
                "expirationDate": body["expirationDate"],
                "submitDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "due": time.monotonic() + self._config.job_delay,
                "done": False,
                "failed": [],
            }
            self._stats["jobs_submitted"] += 1
        return json_response(200, {"jobId": int(job_id)})

    def _job_row(self, job: dict[str, Any]) -> dict[str, Any]:
        return {
            "jobId": job["jobId"],
            "listId": int(job["listId"]) if job["listId"].isdigit() else job["listId"],
            "listName": job["listName"],
            "submitDate": job["submitDate"],
            "startDate": job["submitDate"],
            "isComplete": job["done"],
            "isCancelled": False,
            "completedDate": job.get("completedDate"),
        }

    def _api_jobs(self, params: dict[str, str], req: Request) -> Response:
        """Every upload job of the business unit, newest first. Assumed: the schema names
        no query parameters; ``_links.next`` pages (here by skip/top, as the lists do)."""
        if not self._authorized(req):
            return error_response("jobs", 401)
        try:
            skip, top = self._skip_top(req, 100, 1000)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        with self._lock:
            self._settle_jobs()
            every = [self._job_row(job) for job in reversed(list(self._jobs.values()))]
        return json_response(
            200,
            {
                "totalRecords": len(every),
                "_links": self._links(req, skip, top, len(every)),
                "uploadJobs": every[skip : skip + top],
            },
        )

    def _api_job(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("job", 401)
        with self._lock:
            self._settle_jobs()
            job = self._jobs.get(params["job"])
            if job is None:
                return json_response(404, {"error": "job_not_found"})
            payload = self._job_row(job)
        # Status only: what each row did is not in the answer (NICE's schema).
        return json_response(200, {"uploadJobs": [payload]})

    def _api_dnc_search(self, params: dict[str, str], req: Request) -> Response:
        """The groups holding one number (``?phoneNumber=``), as ``searchResults``."""
        if not self._authorized(req):
            return error_response("dnc_search", 401)
        phone = (req.query.get("phoneNumber") or [""])[0]
        if not phone.isdigit():
            return json_response(400, {"error": "phoneNumber must be digits"})
        with self._lock:
            rows = [
                {
                    "dncGroupId": int(gid) if gid.isdigit() else gid,
                    "dncGroupName": f"Group {gid}",
                    "dncGroupDescription": "",
                    "formattedPhone": phone,
                    "expiredDate": held[phone].get("expiredDate"),
                    "dateCollected": "2026-01-01T00:00:00Z",
                    "lastUpdateTime": "2026-01-01T00:00:00Z",
                }
                for gid, held in self._dnc.items()
                if phone in held
            ]
        return json_response(200, {"searchResults": rows})

    def _api_dnc(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("dnc", 401)
        try:
            body = json.loads(req.body)
            items = body.get("dncGroupRecords") if isinstance(body, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError
        except ValueError:
            return json_response(
                400, {"error": "body must be {'dncGroupRecords': [{phoneNumber}]}"}
            )
        results: list[dict[str, Any]] = []
        with self._lock:
            group = self._dnc.get(params["group"])
            if group is None:
                return json_response(404, {"error": "dnc_group_not_found"})
            for item in items:
                phone = str(item.get("phoneNumber", ""))
                if not phone.isdigit() or not 7 <= len(phone) <= 15:
                    results.append(
                        {"success": False, "error": "InvalidPhone", "formattedPhone": phone}
                    )
                    continue
                # Assumed: a number already in the group is overwritten (its expiry too).
                self._stats["dnc_rewritten" if phone in group else "dnc_added"] += 1
                group[phone] = {"expiredDate": item.get("expiredDate")}
                results.append({"success": True, "error": None, "formattedPhone": phone})
        errors = sum(1 for r in results if not r["success"])
        return json_response(200, {"resultSet": {"errorCount": errors, "recordResults": results}})

    # -- internals: control API
