"""cxsweep.logs: phone numbers masked in every record, JSON lines carrying the task's
context."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from cxsweep.logs import (
    JsonFormatter,
    MaskingFilter,
    bind,
    bound,
    mask_number,
    mask_numbers,
    unbind,
)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger and handler (the filter on the handler, as the workers install it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"cxsweep.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_a_number_keeps_its_first_four_and_last_four_digits() -> None:
    assert mask_number("+16502530000") == "+1650***0000"
    assert mask_number("(650) 253-0000") == "6502***0000"
    assert mask_number("12345") == "12345"  # too short to be a phone number


def test_numbers_in_text_are_masked_but_ids_and_durations_are_not() -> None:
    line = (
        "task a4389e76-1234-4567-8901-123456789012 fixed +16502530000 and 650 253 0001"
        " in 0.0216053s"
    )
    masked = mask_numbers(line)
    assert "+16502530000" not in masked and "650 253 0001" not in masked
    assert "+1650***0000" in masked and "6502***0001" in masked
    assert "a4389e76-1234-4567-8901-123456789012" in masked
    assert "0.0216053s" in masked


def test_bind_adds_fields_until_unbound() -> None:
    before = dict(bound())
    token = bind(run_id="r-1", list_id="L-9", task_id=None)
    try:
        assert bound()["run_id"] == "r-1" and bound()["list_id"] == "L-9"
        assert "task_id" not in bound()  # an empty field is not bound
    finally:
        unbind(token)
    assert dict(bound()) == before


def test_a_json_line_carries_context_and_masks_arguments(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    token = bind(run_id="r-ctx", list_id="L-ctx")
    try:
        logger.info("removed %s", "+16502530000", extra={"list_id": "L-extra"})
    finally:
        unbind(token)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "removed +1650***0000"
    assert entry["level"] == "INFO"
    assert entry["run_id"] == "r-ctx"
    assert entry["list_id"] == "L-extra"  # the record's own field wins over the context
    assert entry["ts"].endswith("+00:00")


def test_a_traceback_is_masked_too(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise ValueError("bad number +16502530000")
    except ValueError:
        logger.exception("judging failed")
    entry = json.loads(stream.getvalue())
    assert "ValueError: bad number +1650***0000" in entry["exc"]
    assert "+16502530000" not in stream.getvalue()


def test_the_filter_rewrites_the_record_for_every_handler() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "calling %s for %s", ("+447911123456", "L1"), None
    )
    assert MaskingFilter().filter(record) is True
    assert record.getMessage() == "calling +4479***3456 for L1"
    assert record.args is None
