"""Line-type providers over real sockets: the simulator's Twilio fake and a real Redis."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import phonenumbers
import pytest
import redis

from cxsweep.errors import CredentialsRefused, MalformedResponse, RateLimited, RetryableApiError
from cxsweep.phone.lookup import (
    DEFAULT_TTL,
    CachedProvider,
    LineTypeAnswer,
    LineTypeProvider,
    OfflineProvider,
    TwilioProvider,
    answer_from_twilio,
    build_provider,
)
from cxsweep.phone.numbers import Directive, Reason, Sanitizer
from cxsweep.settings import Secret, Settings
from devtools.simulator import Simulator, lookup_line_type

SID, TOKEN = "ACsimulator", Secret("sim-token")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def lookups(sim: Simulator) -> int:
    return int(sim.stats()["requests"]["lookup"])


def us_numbers(count: int, start: int = 0) -> list[str]:
    return [f"+1212555{n:04d}" for n in range(start, start + count)]


def number_with(provider_type: str) -> str:
    for n in range(10_000):
        e164 = f"+1415555{n:04d}"
        if lookup_line_type(e164)[0] == provider_type:
            return e164
    raise AssertionError(f"the fake never answers {provider_type}")


@pytest.mark.parametrize(
    ("provider_type", "line_type", "disposable"),
    [
        ("mobile", "MOBILE", False),
        ("landline", "FIXED_LINE", False),
        ("fixedVoip", "VOIP", False),
        ("nonFixedVoip", "VOIP", True),
        ("tollFree", "TOLL_FREE", False),
        ("premium", "PREMIUM_RATE", False),
        ("sharedCost", "SHARED_COST", False),
        ("personal", "PERSONAL_NUMBER", False),
        ("voicemail", "VOICEMAIL", False),
        ("pager", "PAGER", False),
        ("uan", "UAN", False),
        ("unknown", None, False),
    ],
)
def test_twilio_types_map_onto_libphonenumber_names(
    provider_type: str, line_type: str | None, disposable: bool
) -> None:
    answer = answer_from_twilio(
        {"valid": True, "line_type_intelligence": {"type": provider_type, "carrier_name": "X"}}
    )
    assert (answer.line_type, answer.disposable, answer.provider_type) == (
        line_type,
        disposable,
        provider_type,
    )


def test_wrongly_shaped_answers_are_malformed() -> None:
    with pytest.raises(MalformedResponse):
        answer_from_twilio({"valid": "yes", "line_type_intelligence": "mobile"})
    assert answer_from_twilio({"valid": False, "line_type_intelligence": None}).line_type is None


def test_offline_provider_cannot_tell_a_us_mobile() -> None:
    answers = OfflineProvider().lookup_many(["+12125550199", "+447400123456", "+1212"])
    assert answers["+12125550199"].line_type == "FIXED_LINE_OR_MOBILE"
    assert answers["+447400123456"].line_type == "MOBILE"
    assert "+1212" not in answers
    assert isinstance(OfflineProvider(), LineTypeProvider)


def test_twilio_provider_reads_the_fake(sim: Simulator) -> None:
    provider = TwilioProvider(sim.url, SID, TOKEN)
    numbers = us_numbers(5)
    answers = provider.lookup_many(numbers)
    assert lookups(sim) == 5
    for e164 in numbers:
        provider_type, carrier_name = lookup_line_type(e164)
        assert answers[e164].provider_type == provider_type
        assert answers[e164].carrier == carrier_name


def test_bad_credentials_are_refused(sim: Simulator) -> None:
    with pytest.raises(CredentialsRefused):
        TwilioProvider(sim.url, SID, Secret("wrong")).lookup_many(us_numbers(1))


def test_lookup_cache_is_shared_across_workers(sim: Simulator, redis_client: redis.Redis) -> None:
    namespace = f"test:lookup:{uuid.uuid4().hex}"
    # Two workers: separate HTTP sessions and Redis connections, one cache.
    other_client = redis.Redis(
        connection_pool=redis.ConnectionPool(**redis_client.connection_pool.connection_kwargs)
    )
    worker_a = CachedProvider(
        TwilioProvider(sim.url, SID, TOKEN), redis_client, namespace=namespace
    )
    worker_b = CachedProvider(
        TwilioProvider(sim.url, SID, TOKEN), other_client, namespace=namespace
    )
    first = us_numbers(20)
    answers_a = worker_a.lookup_many(first)
    assert lookups(sim) == 20
    answers_b = worker_b.lookup_many(first)
    assert lookups(sim) == 20, "worker B paid again for numbers worker A looked up"
    assert answers_b == answers_a
    # Overlapping page on the next run: only the new numbers are paid for.
    worker_b.lookup_many(us_numbers(30, start=10))
    assert lookups(sim) == 40
    assert (worker_b.hits, worker_b.misses) == (20 + 10, 20)
    ttl = redis_client.ttl(f"{namespace}:{first[0]}")
    assert 0 < int(ttl) <= DEFAULT_TTL
    other_client.close()


def test_rate_limit_is_raised_for_the_task_to_retry_and_paid_answers_kept(
    sim: Simulator, redis_client: redis.Redis
) -> None:
    namespace = f"test:lookup:{uuid.uuid4().hex}"
    sim.add_faults(
        [
            {
                "method": "GET",
                "path": "PhoneNumbers",
                "action": 429,
                "after": 3,
                "times": 1,
                "retry_after": "7",
            }
        ]
    )
    cached = CachedProvider(TwilioProvider(sim.url, SID, TOKEN), redis_client, namespace=namespace)
    numbers = us_numbers(6, start=100)
    with pytest.raises(RateLimited) as caught:
        cached.lookup_many(numbers)
    assert caught.value.retry_after == 7.0
    assert lookups(sim) == 4
    # The retry pays only for what the failed attempt did not get.
    answers = cached.lookup_many(numbers)
    assert set(answers) == set(numbers)
    assert lookups(sim) == 4 + 3


def test_server_errors_are_retryable(sim: Simulator) -> None:
    sim.add_faults([{"method": "GET", "path": "PhoneNumbers", "action": 503, "times": 1}])
    with pytest.raises(RetryableApiError) as caught:
        TwilioProvider(sim.url, SID, TOKEN).lookup_many(us_numbers(2))
    assert caught.value.is_server_error and not isinstance(caught.value, RateLimited)


def test_sanitizer_uses_the_live_lookup_only_after_offline_checks(
    sim: Simulator, redis_client: redis.Redis
) -> None:
    burner = number_with("nonFixedVoip")
    cable = number_with("fixedVoip")
    mobile = number_with("mobile")
    provider = CachedProvider(
        TwilioProvider(sim.url, SID, TOKEN), redis_client, namespace=f"test:{uuid.uuid4().hex}"
    )
    directive = Directive(blocked_types=frozenset({"VOIP", "TOLL_FREE"}))
    sanitizer = Sanitizer(directive, lookup=provider)
    raws = [burner, cable, mobile, "+1 800 555 1234", "+44 20 7031 3000 x1", "garbage", mobile]
    verdicts = sanitizer.check_many(raws)
    assert [v.reason for v in verdicts] == [
        Reason.DISPOSABLE,
        Reason.LINE_TYPE,
        None,
        Reason.LINE_TYPE,
        Reason.EXTENSION,
        Reason.UNPARSEABLE,
        None,
    ]
    assert verdicts[2].line_type == "MOBILE" and verdicts[2].carrier
    assert lookups(sim) == 3  # toll-free, extension and garbage never reached the provider
    sanitizer.check_many(raws)
    assert lookups(sim) == 3


def test_build_provider_only_when_asked_and_configured(redis_client: redis.Redis) -> None:
    plain = Settings()
    configured = dataclasses.replace(plain, twilio_account_sid=SID, twilio_auth_token=TOKEN)
    twilio = Directive(lookup="twilio")
    assert build_provider(configured, Directive(), redis_client) is None
    assert build_provider(plain, twilio, redis_client) is None
    provider = build_provider(configured, twilio, redis_client)
    assert isinstance(provider, CachedProvider)
    assert isinstance(provider.inner, TwilioProvider)


def test_answers_round_trip_through_the_cache_format() -> None:
    answer = LineTypeAnswer("VOIP", "TextNow - SVR", True, "nonFixedVoip", None)
    assert LineTypeAnswer.from_json(answer.to_json()) == answer
    assert phonenumbers.is_valid_number(phonenumbers.parse(number_with("landline")))
