"""Crontab expressions as the policy file and ``CXSWEEP_SWEEP_SCHEDULE`` write them.

A module of its own: the workers' config reads the sweep's schedule with it, and must
not import the task modules to do so (they register tasks on import). Celery's
``crontab`` is the schedule beat runs, so this stays out of the Celery-free domain.
"""

from __future__ import annotations

from celery.schedules import ParseException, crontab


def parse_crontab(value: str) -> crontab:
    """A 5-field crontab string (minute hour day-of-month month day-of-week)."""
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"{value!r}: expected 5 fields")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ParseException as exc:  # not a ValueError: callers catch one type
        raise ValueError(f"{value!r}: {exc}") from None
