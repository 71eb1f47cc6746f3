from __future__ import annotations

from celery import Celery

from workers import config

app = Celery("cxsweep")
app.config_from_object(config)
# Importing the signal handlers registers them with this app's worker.
import workers._signals  # noqa: E402,F401
