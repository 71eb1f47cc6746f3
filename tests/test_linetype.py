"""cxsweep.phone.linetype: a provider's answer, and what a provider must offer."""

from __future__ import annotations

import dataclasses

import pytest

from cxsweep.phone.linetype import LineTypeAnswer, LineTypeProvider
from cxsweep.phone.lookup import OfflineProvider


def test_an_answer_survives_a_round_trip_through_json() -> None:
    answer = LineTypeAnswer(
        line_type="MOBILE",
        carrier="T-Mobile",
        disposable=True,
        provider_type="mobile",
        error_code=60600,
    )
    assert LineTypeAnswer.from_json(answer.to_json()) == answer
    assert LineTypeAnswer.from_json(answer.to_json().encode()) == answer


def test_a_cached_answer_missing_fields_reads_as_no_opinion() -> None:
    answer = LineTypeAnswer.from_json("{}")
    assert answer == LineTypeAnswer(line_type=None)
    assert answer.disposable is False and answer.carrier is None


def test_an_answer_cannot_be_changed_once_made() -> None:
    answer = LineTypeAnswer(line_type="FIXED_LINE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.line_type = "MOBILE"  # type: ignore[misc]


def test_the_offline_provider_satisfies_the_protocol_and_answers() -> None:
    provider = OfflineProvider()
    assert isinstance(provider, LineTypeProvider)
    assert not isinstance(object(), LineTypeProvider)
    answers = provider.lookup_many(["+447911123456", "+999"])
    assert answers["+447911123456"].line_type == "MOBILE"
    assert "+999" not in answers  # no answer for an invalid number, not a guess
