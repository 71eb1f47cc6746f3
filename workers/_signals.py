"""Worker-process hooks: where logs are made safe to ship."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger

from cxsweep.logs import MaskingFilter


@after_setup_logger.connect
@after_setup_task_logger.connect
def _mask_numbers(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        handler.addFilter(MaskingFilter())
