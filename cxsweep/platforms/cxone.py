"""NICE CXone's Admin API as a ``cxsweep.platforms.base.Backend`` (docs/cxone-api.md §2).

Like ``V2Client`` it makes one attempt per call and turns every answer into a value or a
typed error; it never sleeps and never loops on the platform's behalf. The one place the
platform is asynchronous, an upload job, is followed by raising ``JobPending`` so that the
Celery task comes back later. A job reports only its status, so what a write did is read
back from the list before it is counted. A list downloads whole, in one answer of up to
500,000 records, parsed as it streams in and spooled to a local file pages are served from.

The backend is put together from one module per concern:
``cxone_session`` (token, discovery, the authorized call), ``cxone_download`` (the list
read whole, the spool, warnings, read-back), ``cxone_upload`` (uploads and their jobs) and
``cxone_remove`` (removeProspects and the do-not-call group).

What cxsweep knows of this API comes from public sources, not from a tenant: every
behaviour marked "Assumed" in those modules is listed in docs/cxone.md and should be
checked against the NICE developer portal before a production sweep.
"""

from __future__ import annotations

from cxsweep.platforms.cxone_remove import ListRemovals
from cxsweep.platforms.cxone_upload import JobPending, ListUploads

__all__ = ["CxoneBackend", "JobPending"]


class CxoneBackend(ListUploads, ListRemovals):
    """Calling lists of a NICE CXone tenant, through the Admin API."""

    name = "cxone"
    # The list comes whole in one answer (no skip/top in NICE's schema): pages follow
    # one another from the spool of that answer.
    parallel_pages = False
    read_ahead = False  # pages are served from the local spool of one download
    # An upload overwrites whole records, so updates carry the record as read.
    update_needs_record = True
