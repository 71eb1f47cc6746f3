"""The line-type look-up routes: a fake of Twilio Lookup v2 whose answers are
deterministic per number, from libphonenumber's view of it plus a weighted draw."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType as T

from devtools.simulator.state import SimulatorState
from devtools.simulator.wire import Request, Response, json_response, twilio_error

# Weighted line types for the Lookup fake, by libphonenumber's own view of the number;
# the weights only need to give a sweep a realistic sprinkle of VoIP and burner lines.
_LTI_TABLES: dict[str, tuple[tuple[str, int], ...]] = {
    "ambiguous": (
        ("mobile", 55),
        ("landline", 27),
        ("fixedVoip", 8),
        ("nonFixedVoip", 6),
        ("unknown", 2),
        ("personal", 1),
        ("voicemail", 1),
    ),
    "mobile": (("mobile", 90), ("nonFixedVoip", 8), ("unknown", 2)),
    "fixed": (("landline", 84), ("fixedVoip", 14), ("unknown", 2)),
    "voip": (("fixedVoip", 50), ("nonFixedVoip", 50)),
}
_LTI_FIXED: dict[int, str] = {
    T.TOLL_FREE: "tollFree",
    T.PREMIUM_RATE: "premium",
    T.SHARED_COST: "sharedCost",
    T.UAN: "uan",
    T.PAGER: "pager",
    T.VOICEMAIL: "voicemail",
    T.PERSONAL_NUMBER: "personal",
}
_CARRIERS: dict[str, tuple[str, ...]] = {
    "mobile": (
        "Verizon Wireless",
        "T-Mobile USA, Inc.",
        "AT&T Wireless",
        "EE Limited",
        "Vodafone UK",
        "Rogers Communications",
        "Bell Mobility",
    ),
    "landline": ("Comcast", "AT&T Local", "Frontier Communications", "BT Group", "Bell Canada"),
    "fixedVoip": ("Vonage", "Comcast Digital Voice", "RingCentral", "Ooma"),
    "nonFixedVoip": (
        "Google (Grand Central) - SVR",
        "Bandwidth/13 - Bandwidth.com - SVR",
        "TextNow - SVR",
        "Twilio - SVR",
    ),
}


def lookup_line_type(e164: str) -> tuple[str, str | None]:
    """The fake's answer for a valid number: (line type, carrier). Pure and deterministic."""
    digest = int.from_bytes(hashlib.sha256(e164.encode()).digest()[:8], "big")
    try:
        number = phonenumbers.parse(e164, None)
        pn_type = phonenumbers.number_type(number)
    except phonenumbers.NumberParseException:
        pn_type = T.UNKNOWN
    if pn_type in _LTI_FIXED:
        line_type = _LTI_FIXED[pn_type]
    else:
        table_name = {
            T.MOBILE: "mobile",
            T.FIXED_LINE: "fixed",
            T.VOIP: "voip",
        }.get(pn_type, "ambiguous")
        table = _LTI_TABLES[table_name]
        slot = digest % sum(w for _, w in table)
        line_type = table[-1][0]
        for name, weight in table:
            if slot < weight:
                line_type = name
                break
            slot -= weight
    carriers = _CARRIERS.get(line_type)
    carrier = carriers[(digest >> 20) % len(carriers)] if carriers else None
    return line_type, carrier


# --- the simulator --------------------------------------------------------------------------


class LookupRoutes(SimulatorState):
    """Twilio Lookup v2's PhoneNumbers resource, served from the simulator's port."""

    def _api_lookup(self, params: dict[str, str], req: Request) -> Response:
        cfg = self._config
        header = req.headers.get("Authorization", "")
        ok = False
        if header.lower().startswith("basic "):
            try:
                sid, _, token = base64.b64decode(header[6:].strip()).decode().partition(":")
                ok = secrets.compare_digest(sid, cfg.twilio_account_sid) and (
                    secrets.compare_digest(token, cfg.twilio_auth_token)
                )
            except (binascii.Error, UnicodeDecodeError):
                ok = False
        if not ok:
            return twilio_error(401, 20003, "Authenticate")
        raw = params["number"]
        wanted = {
            part.strip()
            for value in req.query.get("Fields", [])
            for part in value.split(",")
            if part.strip()
        }
        url = f"https://lookups.twilio.com/v2/PhoneNumbers/{raw}"
        payload: dict[str, Any] = {
            "calling_country_code": None,
            "country_code": None,
            "phone_number": raw,
            "national_format": None,
            "valid": False,
            "validation_errors": [],
            "caller_name": None,
            "sim_swap": None,
            "call_forwarding": None,
            "line_type_intelligence": None,
            "identity_match": None,
            "reassigned_number": None,
            "sms_pumping_risk": None,
            "phone_number_quality_score": None,
            "url": url,
        }
        try:
            number = phonenumbers.parse(raw, (req.query.get("CountryCode") or ["US"])[0])
        except phonenumbers.NumberParseException:
            payload["validation_errors"] = ["NOT_A_NUMBER"]
            return json_response(200, payload)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        payload["phone_number"] = e164
        payload["calling_country_code"] = str(number.country_code)
        payload["country_code"] = phonenumbers.region_code_for_number(number)
        payload["national_format"] = phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.NATIONAL
        )
        if not phonenumbers.is_valid_number(number):
            payload["validation_errors"] = ["INVALID_BUT_POSSIBLE"]
            return json_response(200, payload)
        payload["valid"] = True
        if "line_type_intelligence" in wanted:
            line_type, carrier = lookup_line_type(e164)
            payload["line_type_intelligence"] = {
                "type": line_type,
                "carrier_name": carrier,
                "mobile_country_code": None,
                "mobile_network_code": None,
                "error_code": None,
            }
        return json_response(200, payload)
