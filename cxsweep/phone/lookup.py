"""Line-type providers: offline metadata, Twilio Lookup v2, and a shared Redis cache.

The sanitizer asks a provider only about numbers that passed every offline check, one
batch per page. Twilio's 429 and 5xx become ``RateLimited`` / ``RetryableApiError`` so
the task layer retries with back-off; nothing here sleeps.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import phonenumbers
import requests
from phonenumbers import carrier

from cxsweep.errors import (
    ApiError,
    CredentialsRefused,
    MalformedResponse,
    RateLimited,
    RetryableApiError,
)
from cxsweep.phone.linetype import LineTypeAnswer, LineTypeProvider
from cxsweep.phone.numbers import TYPE_NAMES, Directive
from cxsweep.runs import keys

if TYPE_CHECKING:
    import redis

    from cxsweep.settings import Secret, Settings

DEFAULT_TTL = 30 * 24 * 3600
DEFAULT_NAMESPACE = keys.LOOKUP_NAMESPACE

# Twilio line_type_intelligence.type -> libphonenumber type name. nonFixedVoip (burner
# apps) is VOIP that is also flagged disposable; "unknown" is deliberately absent so the
# offline type stands when the provider does not know.
TWILIO_TYPES: dict[str, str] = {
    "landline": "FIXED_LINE",
    "mobile": "MOBILE",
    "fixedVoip": "VOIP",
    "nonFixedVoip": "VOIP",
    "personal": "PERSONAL_NUMBER",
    "tollFree": "TOLL_FREE",
    "premium": "PREMIUM_RATE",
    "sharedCost": "SHARED_COST",
    "uan": "UAN",
    "voicemail": "VOICEMAIL",
    "pager": "PAGER",
}
DISPOSABLE_TYPES = frozenset({"nonFixedVoip"})


class OfflineProvider:
    """libphonenumber's metadata: free, but a US number is only FIXED_LINE_OR_MOBILE."""

    def lookup_many(self, e164s: list[str]) -> dict[str, LineTypeAnswer]:
        answers: dict[str, LineTypeAnswer] = {}
        for e164 in e164s:
            try:
                number = phonenumbers.parse(e164, None)
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(number):
                continue
            type_name = TYPE_NAMES.get(phonenumbers.number_type(number), "UNKNOWN")
            answers[e164] = LineTypeAnswer(
                line_type=type_name,
                carrier=carrier.name_for_number(number, "en") or None,
                provider_type=type_name,
            )
        return answers


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def answer_from_twilio(body: Mapping[str, Any]) -> LineTypeAnswer:
    """Map one Lookup v2 response body (``Fields=line_type_intelligence``)."""
    intel = body.get("line_type_intelligence")
    valid = body.get("valid")
    if not isinstance(valid, bool) or not (intel is None or isinstance(intel, Mapping)):
        raise MalformedResponse("line-type look-up answer is not in Lookup v2's shape")
    if not valid or intel is None:
        return LineTypeAnswer(line_type=None)
    raw_type = intel.get("type")
    error_code = intel.get("error_code")
    if raw_type is not None and not isinstance(raw_type, str):
        raise MalformedResponse("line-type look-up answer has a non-string type")
    return LineTypeAnswer(
        line_type=TWILIO_TYPES.get(raw_type or ""),
        carrier=intel.get("carrier_name") or None,
        disposable=raw_type in DISPOSABLE_TYPES,
        provider_type=raw_type,
        error_code=error_code if isinstance(error_code, int) else None,
    )


class TwilioProvider:
    """Twilio Lookup v2 line-type intelligence, one GET per number (HTTP Basic).

    When a retryable failure interrupts a batch, the raised error carries the answers
    already paid for as ``partial`` so ``CachedProvider`` can keep them.
    """

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: Secret,
        session: requests.Session | None = None,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = (account_sid, auth_token.reveal())
        self._session = session or requests.Session()
        self._timeout = timeout
        self.requests_made = 0

    def lookup_many(self, e164s: list[str]) -> dict[str, LineTypeAnswer]:
        answers: dict[str, LineTypeAnswer] = {}
        for e164 in e164s:
            try:
                answer = self._lookup_one(e164)
            except RetryableApiError as exc:
                exc.partial = answers  # type: ignore[attr-defined]
                raise
            if answer is not None:
                answers[e164] = answer
        return answers

    def _lookup_one(self, e164: str) -> LineTypeAnswer | None:
        url = f"{self.base_url}/v2/PhoneNumbers/{quote(e164, safe='+')}"
        self.requests_made += 1
        try:
            response = self._session.get(
                url,
                params={"Fields": "line_type_intelligence"},
                auth=self._auth,
                timeout=self._timeout,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableApiError(f"line-type look-up failed: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429:
            raise RateLimited(
                "line-type look-up rate limited (429)",
                status=status,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise RetryableApiError(
                f"line-type look-up server error {status}",
                status=status,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise CredentialsRefused(
                f"line-type look-up refused the account SID or token ({status})", status=status
            )
        if status in (400, 404):
            # The provider does not know this one number: no opinion, not a failed batch.
            return LineTypeAnswer(line_type=None, error_code=status)
        if status != 200:
            raise ApiError(f"line-type look-up answered {status}", status=status)
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than it decodes
            raise MalformedResponse("line-type look-up answered non-JSON", status=status) from None
        if not isinstance(body, Mapping):
            raise MalformedResponse("line-type look-up answered a non-object", status=status)
        return answer_from_twilio(body)


class CachedProvider:
    """A Redis-backed cache in front of a paid provider, shared by every worker and run.

    MGET the page, ask the inner provider only for the misses, then SET EX them in one
    pipeline. Every answer is cached, "no opinion" too: the provider charged for it.
    """

    def __init__(
        self,
        inner: LineTypeProvider,
        redis_client: redis.Redis,
        ttl: int = DEFAULT_TTL,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.inner = inner
        self.redis = redis_client
        self.ttl = int(ttl)
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    def _key(self, e164: str) -> str:
        return f"{self.namespace}:{e164}"

    def lookup_many(self, e164s: list[str]) -> dict[str, LineTypeAnswer]:
        unique = list(dict.fromkeys(e164s))
        if not unique:
            return {}
        answers: dict[str, LineTypeAnswer] = {}
        misses: list[str] = []
        cached_values = self.redis.mget([self._key(n) for n in unique])
        for e164, cached in zip(unique, cached_values, strict=True):
            answer = None
            if cached is not None:
                try:
                    answer = LineTypeAnswer.from_json(cached)
                except (ValueError, TypeError, AttributeError):
                    answer = None  # a corrupt entry is just a miss
            if answer is None:
                misses.append(e164)
            else:
                answers[e164] = answer
        self.hits += len(answers)
        self.misses += len(misses)
        if not misses:
            return answers
        try:
            fresh = self.inner.lookup_many(misses)
        except RetryableApiError as exc:
            self._store(getattr(exc, "partial", {}) or {})
            raise
        self._store(fresh)
        answers.update(fresh)
        return answers

    def _store(self, fresh: Mapping[str, LineTypeAnswer]) -> None:
        if not fresh:
            return
        pipe = self.redis.pipeline(transaction=False)
        for e164, answer in fresh.items():
            pipe.set(self._key(e164), answer.to_json(), ex=self.ttl)
        pipe.execute()


def build_provider(
    settings: Settings, directive: Directive, redis_client: redis.Redis | None
) -> LineTypeProvider | None:
    """The cached Twilio provider when this directive asks for it and it is configured."""
    if directive.lookup != "twilio" or not settings.twilio_configured:
        return None
    twilio = TwilioProvider(
        settings.lookup_url,
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        timeout=(settings.connect_timeout, settings.read_timeout),
    )
    if redis_client is None:
        return twilio
    return CachedProvider(twilio, redis_client)
