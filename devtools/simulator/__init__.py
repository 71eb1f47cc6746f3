"""An HTTP simulator of the v2 campaign contact-list API (docs/cxone-api.md section 1) and
of the NICE CXone Admin API calls cxsweep makes (section 2; docs/cxone.md).

It serves the contract over real sockets so clients are tested with their real HTTP stack
(keep-alive, time-outs, dropped connections), and it can misbehave on purpose: latency, a
token-bucket rate limit, random 503s, and scripted faults. A fake of Twilio Lookup v2 is
served from the same port. A control API under ``/_sim/`` (and the same operations as
methods on ``Simulator``) seeds lists, reconfigures, scripts faults and reads statistics.

The CXone side serves the issuer (``/.well-known/openid-configuration``, ``/auth/token``
with password and refresh-token grants, ``/.well-known/cxone-configuration``) and the Admin
API under ``/inContactAPI/services/vNN.0/`` as NICE's published schema gives it: a calling
list downloads whole in one answer, an upload without ``expirationDate`` is refused, and an
upload job reports only its status (``job_delay`` seconds after submission it is complete);
removeProspects, DNC records and scrubbed skills. NICE's access-key token endpoint is
served too. Per-record failures can be injected with ``fail_records``: a refused upload row
is skipped silently, as a status-only job would.

Fault rules (``add_faults`` or ``POST /_sim/faults {"rules": [...]}``) match requests by
``method`` and a ``path`` regex; ``after`` lets that many matching requests through
first, ``times`` caps how often the rule fires (null: for ever). Actions:

- an HTTP status (429 with ``retry_after``, 401, 5xx): answered instead of the call;
- ``drop`` (connection closed), ``hang`` (``seconds`` of delay, then served);
- ``bad_json``, ``missing_contacts``, ``wrong_types``: answers not in the contract's shape;
- ``foreign_link`` with ``origin`` (``"http://127.0.0.2:9"``): the call is served, but
  the link it announces points at that origin: a v2 read's or list-of-lists'
  ``nextPageUri`` (made up on a last page), a CXone answer's ``_links.next``, the OIDC
  ``token_endpoint``, the discovery ``api_endpoint``;
- ``redirect`` with ``origin``: answered ``307`` to the same path on that origin;
- ``inject_contacts`` with ``contacts`` (objects, ids free: ``""``, ``"."``, ``".."``):
  added in front of the *first* page of a v2 read (or of a CXone list's whole answer);
  later pages do not match the rule. The contacts are not stored: writes to them find nothing;
- ``shift_page``: the page is served, then the list shifts under the reader as offset
  paging does. v2: the page's last contact moves to the end of the list, so it is read
  again on the last page. CXone (answered whole): the list's last record moves to the
  front, so the next read starts with it;
- ``edit_contact`` with ``contact`` (an id or external id) and ``fields`` (``{"phone":
  "+1..."}``; CXone columns by name): a person edits that contact just before the
  matching request is served as usual. With ``"method": "PATCH"`` it happens on the
  first write; with ``"method": "GET"`` and ``after`` N, after N reads;
- ``remove_contact`` with ``contact``: a person deletes that contact, then the request
  is served as usual;
- ``refuse_ids`` with ``ids``: a v2 PATCH (or create) whose batch holds any of them is
  refused, nothing applied, with the contract's 400 ``{"invalid": [those ids]}``;
  batches without them do not match. With ``"always": true`` every matching write is
  refused naming all of ``ids``, in the batch or not (a server naming ids it was not
  sent).
- ``fake_success``: a v2 PATCH answered 200, or a DELETE answered 204, with nothing
  applied (a write that says it landed and did not).

Every request that reaches the server, routed or not, is logged (method, path as sent,
whether it carried an Authorization header): ``requests_seen()``, ``GET /_sim/requests``.

Run it stand-alone with ``cxsweep simulator --port 8080 --list demo:10000``.

The package splits it by concern: ``config`` (SimConfig, fault rules), ``wire`` (the HTTP
server, Request, Response), ``store`` and ``state`` (lists, calling lists, tokens, jobs,
stats and the in-process control), ``v2``, ``cxone`` and ``lookup`` (the routes), ``faults``
(what a rule does to a call), ``control`` (``/_sim/``) and ``core`` (``Simulator``).
"""

from devtools.simulator.config import (
    CXONE_PHONE_COLUMNS,
    KINDS,
    MAX_BATCH,
    MAX_REMOVE_PROSPECTS,
    REQUEST_LOG_SIZE,
    FaultRule,
    SimConfig,
)
from devtools.simulator.core import Simulator
from devtools.simulator.lookup import lookup_line_type
from devtools.simulator.state import AnswerHook
from devtools.simulator.store import messy_call_records
from devtools.simulator.wire import Request, Response

__all__ = [
    "CXONE_PHONE_COLUMNS",
    "KINDS",
    "MAX_BATCH",
    "MAX_REMOVE_PROSPECTS",
    "REQUEST_LOG_SIZE",
    "AnswerHook",
    "FaultRule",
    "Request",
    "Response",
    "SimConfig",
    "Simulator",
    "lookup_line_type",
    "messy_call_records",
]
