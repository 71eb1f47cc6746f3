"""cxsweep.errors: the typed failures a task and an operator tell apart."""

from __future__ import annotations

import pytest

from cxsweep.errors import (
    ApiError,
    CredentialsRefused,
    CxsweepError,
    ForeignOrigin,
    ListBusy,
    MalformedResponse,
    NotFound,
    NotYet,
    OperatorError,
    RateLimited,
    RetryableApiError,
    SettingsError,
    TlsRefused,
)


@pytest.mark.parametrize(
    "error",
    [SettingsError, OperatorError, ListBusy, ApiError, RetryableApiError, NotYet],
)
def test_every_failure_is_caught_as_a_cxsweep_error(error: type[CxsweepError]) -> None:
    raised = (
        error("list 7 is busy", retry_after=1.0) if error is NotYet else error("list 7 is busy")
    )
    with pytest.raises(CxsweepError, match=r"^list 7 is busy$"):
        raise raised


def test_permanent_and_transient_failures_do_not_share_a_branch() -> None:
    # A task retries RetryableApiError and gives up on ApiError: neither may catch the other.
    for permanent in (CredentialsRefused, MalformedResponse, NotFound, ForeignOrigin, TlsRefused):
        assert issubclass(permanent, ApiError)
        assert not issubclass(permanent, RetryableApiError)
    for transient in (RateLimited, NotYet):
        assert issubclass(transient, RetryableApiError)
        assert not issubclass(transient, ApiError)
    # A foreign link is a malformed answer, handled as one.
    assert issubclass(ForeignOrigin, MalformedResponse)


def test_api_error_keeps_status_and_the_refused_ids() -> None:
    refused = ApiError("PATCH refused", status=400, invalid=["c1", "c2"])
    assert (refused.status, refused.invalid) == (400, ["c1", "c2"])
    first, second = ApiError("a"), ApiError("b")
    assert first.status is None and first.invalid == []
    first.invalid.append("x")
    assert second.invalid == []  # each error its own list, not a shared default


@pytest.mark.parametrize(
    ("status", "server_error"),
    [(500, True), (503, True), (429, False), (408, False), (None, False)],
)
def test_is_server_error_only_for_5xx(status: int | None, server_error: bool) -> None:
    assert RetryableApiError("x", status=status).is_server_error is server_error


def test_not_yet_is_a_wait_with_no_status() -> None:
    wait = NotYet("upload job still running", retry_after=2.5)
    assert wait.retry_after == 2.5 and wait.status is None
    assert not wait.is_server_error
    limited = RateLimited("429", status=429, retry_after=3.0)
    assert (limited.status, limited.retry_after) == (429, 3.0)
