"""Log hygiene: phone numbers masked (``+1650***0000``) wherever a record is written."""

from __future__ import annotations

import logging
import re

# A run of 7+ digits, optionally led by "+": long enough to be a phone number.
_NUMBER = re.compile(r"\+?\d[\d\-. ()]{5,}\d")


def mask_number(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    prefix = "+" if text.startswith("+") else ""
    if len(digits) < 7:
        return text
    return f"{prefix}{digits[:4]}***{digits[-4:]}"


def mask_numbers(text: str) -> str:
    return _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
