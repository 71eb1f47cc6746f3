"""Deterministic, realistic-looking messy contact lists for the simulator, tests and benchmarks.

Every number that is meant to be valid comes from a pool of blocks (a national-number
prefix plus four free trailing digits) that were checked with libphonenumber when the pool
was built, so a seeded list's mix of keep / rewrite / reject is known in advance. The pool
is built once per process; after that, generating a contact is only string work, which is
what makes a million-contact list cheap.

Long because it is data as much as code: the number pools of 22 regions and the messy
spellings that make a list realistic, kept together so one seed reproduces one list.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType as T

if hasattr(phonenumbers, "enable_pattern_cache"):
    phonenumbers.enable_pattern_cache()

SUFFIX_DIGITS = 4
_SUFFIX_SPACE = 10**SUFFIX_DIGITS

# Fixed so that the pool, and therefore every seeded list, is the same in every process.
_POOL_SEED = 20240611


# Real area codes: seeded lists look like real dialing lists, not 555 numbers.
def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_US_AREA_CODES = _words(
    "201 202 203 205 206 207 208 210 212 213 214 215 216 217 218 219 224 225 228 229 231 234 "
    "239 240 248 251 252 253 254 256 260 262 267 269 270 272 276 281 301 302 303 304 305 307 "
    "308 309 310 312 313 314 315 316 317 318 319 320 321 323 325 330 331 334 336 337 339 346 "
    "347 351 352 360 361 385 386 401 402 404 405 406 407 408 409 410 412 413 414 415 417 419 "
    "423 424 425 430 432 434 435 440 442 443 458 469 470 475 478 479 480 484 501 502 503 504 "
    "505 507 508 509 510 512 513 515 516 517 518 520 530 540 541 551 559 561 562 563 567 570 "
    "571 573 574 575 580 585 586 601 602 603 605 606 607 608 609 610 612 614 615 616 617 618 "
    "619 620 623 626 630 631 636 641 646 650 651 660 661 662 678 682 701 702 703 704 706 707 "
    "708 712 713 714 715 716 717 718 719 720 724 727 731 732 734 740 754 757 760 762 763 765 "
    "770 772 773 774 775 779 781 785 786 801 802 803 804 805 806 808 810 812 813 814 815 816 "
    "817 818 828 830 831 832 843 845 847 848 850 856 857 858 859 860 862 863 864 865 870 872 "
    "878 901 903 904 906 907 908 909 910 912 913 914 915 916 917 918 919 920 925 928 931 936 "
    "937 940 941 947 949 951 952 954 956 970 971 972 973 978 979 980 985 989"
)
_CA_AREA_CODES = _words(
    "204 226 236 249 250 289 306 343 365 403 416 418 431 437 438 450 506 514 519 548 579 581 "
    "587 604 613 639 647 705 709 778 780 782 807 819 825 867 873 902 905"
)
# (area code, digits in the national number) for GB geographic numbers.
_GB_AREAS = (
    ("20", 10),
    ("121", 10),
    ("131", 10),
    ("141", 10),
    ("161", 10),
    ("113", 10),
    ("114", 10),
    ("115", 10),
    ("116", 10),
    ("117", 10),
    ("118", 10),
    ("191", 10),
    ("29", 10),
    ("28", 10),
    ("23", 10),
    ("24", 10),
    ("1223", 10),
    ("1865", 10),
    ("1273", 10),
    ("1202", 10),
    ("1603", 10),
    ("1904", 10),
    ("1392", 10),
    ("1752", 10),
)
_NANP_TOLL_FREE = ("800", "888", "877", "866", "855", "844", "833")


@dataclass(frozen=True, slots=True)
class Block:
    """``10**SUFFIX_DIGITS`` numbers sharing a checked prefix: ``prefix + dddd``."""

    cc: str
    prefix: str
    region: str
    type_name: str
    # Where the area code ends inside the national number, for human-style grouping.
    area_len: int

    def national(self, suffix: int) -> str:
        return f"{self.prefix}{suffix:04d}"


@dataclass(frozen=True)
class Pool:
    blocks: dict[str, tuple[Block, ...]]

    def __getitem__(self, key: str) -> tuple[Block, ...]:
        return self.blocks[key]


def _block_ok(block: Block, rng: random.Random, accepted_types: frozenset[int]) -> bool:
    # Trailing digits are never constrained by NANP or GB metadata, but the samples below
    # (both extremes plus a few random) would catch a prefix where they are.
    samples = [0, _SUFFIX_SPACE - 1, *(rng.randrange(_SUFFIX_SPACE) for _ in range(6))]
    for suffix in samples:
        number = phonenumbers.PhoneNumber(
            country_code=int(block.cc), national_number=int(block.national(suffix))
        )
        if block.national(suffix).startswith("0"):
            number.italian_leading_zero = True
        if not phonenumbers.is_valid_number(number):
            return False
        if phonenumbers.number_type(number) not in accepted_types:
            return False
        if phonenumbers.region_code_for_number(number) != block.region:
            return False
    return True


def _make_blocks(
    rng: random.Random,
    want: int,
    propose: Callable[[random.Random], tuple[str, int]],
    cc: str,
    region: str,
    type_name: str,
    accepted_types: frozenset[int],
) -> tuple[Block, ...]:
    """Draw prefixes from ``propose`` (returns prefix, area length) until ``want`` pass."""
    blocks: dict[str, Block] = {}
    attempts = 0
    while len(blocks) < want and attempts < want * 50:
        attempts += 1
        prefix, area_len = propose(rng)
        if prefix in blocks:
            continue
        block = Block(cc, prefix, region, type_name, area_len)
        if _block_ok(block, rng, accepted_types):
            blocks[prefix] = block
    if not blocks:
        raise RuntimeError(f"no valid {region} {type_name} numbers could be generated")
    return tuple(blocks.values())


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _nanp(area_codes: Sequence[str]) -> Callable[[random.Random], tuple[str, int]]:
    def propose(rng: random.Random) -> tuple[str, int]:
        # Exchanges start 2-9; N11 and 555 exchanges look fake to anyone who reads the list.
        while True:
            exchange = str(rng.randint(2, 9)) + _digits(rng, 2)
            if exchange[1:] != "11" and exchange != "555":
                return rng.choice(area_codes) + exchange, 3

    return propose


def _gb_fixed(rng: random.Random) -> tuple[str, int]:
    area, length = rng.choice(_GB_AREAS)
    lead = str(rng.randint(2, 8)) if len(area) < 4 else str(rng.randint(2, 9))
    rest = length - len(area) - SUFFIX_DIGITS - 1
    return area + lead + _digits(rng, rest), len(area)


def _gb_mobile(rng: random.Random) -> tuple[str, int]:
    return "7" + str(rng.choice("45789")) + _digits(rng, 4), 4


def _from_example(
    region: str, type_code: int, keep: int
) -> Callable[[random.Random], tuple[str, int]]:
    """Vary the example number's digits after its first ``keep`` ones."""
    example = phonenumbers.example_number_for_type(region, type_code)
    if example is None:
        raise RuntimeError(f"libphonenumber has no {region} example of type {type_code}")
    national = phonenumbers.national_significant_number(example)
    stem = national[:-SUFFIX_DIGITS]

    def propose(rng: random.Random) -> tuple[str, int]:
        return stem[:keep] + _digits(rng, len(stem) - keep), keep

    return propose


def _nanp_toll_free(rng: random.Random) -> tuple[str, int]:
    return rng.choice(_NANP_TOLL_FREE) + str(rng.randint(2, 9)) + _digits(rng, 2), 3


_FIXED_OR_MOBILE = frozenset({T.FIXED_LINE_OR_MOBILE, T.FIXED_LINE, T.MOBILE})

# Foreign regions used by messy_numbers, varied from their example numbers.
_EXTRA_REGIONS: dict[str, tuple[tuple[int, int], ...]] = {
    # region: ((type, digits kept from the example), ...)
    "DE": ((T.MOBILE, 3), (T.FIXED_LINE, 2)),
    "FR": ((T.MOBILE, 1), (T.FIXED_LINE, 1)),
    "AU": ((T.MOBILE, 1), (T.FIXED_LINE, 1)),
    "IN": ((T.MOBILE, 1), (T.FIXED_LINE_OR_MOBILE, 2)),
    "JM": ((T.MOBILE, 3), (T.FIXED_LINE_OR_MOBILE, 3)),
    "MX": ((T.MOBILE, 2), (T.FIXED_LINE, 2)),
    "BR": ((T.MOBILE, 3), (T.FIXED_LINE, 2)),
    "ES": ((T.MOBILE, 1), (T.FIXED_LINE, 2)),
    "IT": ((T.MOBILE, 2), (T.FIXED_LINE, 2)),
    "NL": ((T.MOBILE, 2), (T.FIXED_LINE, 2)),
    "IE": ((T.MOBILE, 2), (T.FIXED_LINE, 1)),
    "JP": ((T.MOBILE, 2), (T.FIXED_LINE, 1)),
    "ZA": ((T.MOBILE, 2), (T.FIXED_LINE, 2)),
    "PH": ((T.MOBILE, 2), (T.FIXED_LINE, 1)),
}
_TYPE_KEY = {T.MOBILE: "MOBILE", T.FIXED_LINE: "FIXED_LINE", T.FIXED_LINE_OR_MOBILE: "FIXED_LINE"}


@functools.lru_cache(maxsize=1)
def pool() -> Pool:
    """The checked blocks, keyed ``"<REGION>:<KIND>"``; built once per process (~0.3 s)."""
    rng = random.Random(_POOL_SEED)
    blocks: dict[str, tuple[Block, ...]] = {}
    blocks["US:FIXED_LINE"] = _make_blocks(
        rng, 400, _nanp(_US_AREA_CODES), "1", "US", "FIXED_LINE_OR_MOBILE", _FIXED_OR_MOBILE
    )
    blocks["CA:FIXED_LINE"] = _make_blocks(
        rng, 120, _nanp(_CA_AREA_CODES), "1", "CA", "FIXED_LINE_OR_MOBILE", _FIXED_OR_MOBILE
    )
    blocks["GB:FIXED_LINE"] = _make_blocks(
        rng, 150, _gb_fixed, "44", "GB", "FIXED_LINE", frozenset({T.FIXED_LINE})
    )
    blocks["GB:MOBILE"] = _make_blocks(
        rng, 150, _gb_mobile, "44", "GB", "MOBILE", frozenset({T.MOBILE})
    )
    blocks["US:TOLL_FREE"] = _make_blocks(
        rng, 60, _nanp_toll_free, "1", "US", "TOLL_FREE", frozenset({T.TOLL_FREE})
    )
    blocks["GB:TOLL_FREE"] = _make_blocks(
        rng,
        10,
        _from_example("GB", T.TOLL_FREE, 3),
        "44",
        "GB",
        "TOLL_FREE",
        frozenset({T.TOLL_FREE}),
    )
    blocks["GB:VOIP"] = _make_blocks(
        rng, 40, _from_example("GB", T.VOIP, 2), "44", "GB", "VOIP", frozenset({T.VOIP})
    )
    blocks["CA:VOIP"] = _make_blocks(
        rng, 10, _from_example("CA", T.VOIP, 3), "1", "CA", "VOIP", frozenset({T.VOIP})
    )
    for region, kinds in _EXTRA_REGIONS.items():
        cc = str(phonenumbers.country_code_for_region(region))
        for type_code, keep in kinds:
            accepted = frozenset(
                {T.MOBILE, T.FIXED_LINE_OR_MOBILE}
                if type_code == T.MOBILE
                else {T.FIXED_LINE, T.FIXED_LINE_OR_MOBILE}
            )
            blocks[f"{region}:{_TYPE_KEY[type_code]}"] = _make_blocks(
                rng,
                15,
                _from_example(region, type_code, keep),
                cc,
                region,
                _TYPE_KEY[type_code],
                accepted,
            )
    return Pool(blocks)


# --- formatting ------------------------------------------------------------------------


def _fmt_nanp_messy(rng: random.Random, nat: str) -> str:
    a, b, c = nat[:3], nat[3:6], nat[6:]
    forms = (
        f"({a}) {b}-{c}",
        f"{a}.{b}.{c}",
        f"1-{a}-{b}-{c}",
        f"+1 ({a}) {b} {c}",
        f" {a} {b} {c} ",
        f"tel:+1-{a}-{b}-{c}",
        f"{a}-{b}-{c} ",
        f"{a}{b}{c}",
        f"1{a}{b}{c}",
        f"+1 {a}-{b}-{c}",
        f"+1.{a}.{b}.{c}",
        f"({a}){b}-{c}",
        f"{a}-{b}-{c}",
        f"+1 {a} {b} {c}",
        f"1 ({a}) {b}-{c}",
        f"+1{a}{b}{c} ",
        f"{a} {b} {c}",
        f"1.{a}.{b}.{c}",
    )
    return forms[rng.randrange(len(forms))]


def _gb_groups(nat: str, area_len: int) -> tuple[str, str]:
    area, rest = nat[:area_len], nat[area_len:]
    if len(rest) == 8:
        rest = f"{rest[:4]} {rest[4:]}"
    elif len(rest) == 7:
        rest = f"{rest[:3]} {rest[3:]}"
    return area, rest


def _fmt_gb_messy(rng: random.Random, nat: str, area_len: int) -> str:
    area, rest = _gb_groups(nat, area_len)
    flat = rest.replace(" ", "")
    forms = (
        f"+44 {area} {rest}",
        f"+44 (0){area} {rest}",
        f"+44 (0) {area} {rest}",
        f"+44{area}{flat} ",
        f"tel:+44-{area}-{rest.replace(' ', '-')}",
        f"+44-{area}-{flat}",
        f"+44 {area}{flat}",
        f" +44 {area} {rest}",
    )
    return forms[rng.randrange(len(forms))]


def _fmt_international(rng: random.Random, cc: str, nat: str) -> str:
    forms = (
        f"+{cc}{nat}",
        f"+{cc} {nat}",
        f"+{cc} {nat[:3]} {nat[3:]}",
        f"+{cc} {nat[:2]} {nat[2:5]} {nat[5:]}",
        f"+{cc}-{nat[:3]}-{nat[3:]}",
    )
    return forms[rng.randrange(len(forms))]


def _fmt_messy(rng: random.Random, block: Block, nat: str) -> str:
    if block.cc == "1":
        return _fmt_nanp_messy(rng, nat)
    if block.cc == "44":
        return _fmt_gb_messy(rng, nat, block.area_len)
    return _fmt_international(rng, block.cc, nat)


# --- drawing distinct numbers ------------------------------------------------------------


class _Drawer:
    """Draws numbers that have not been drawn before from the pool's blocks."""

    def __init__(self, rng: random.Random, used: set[str] | None = None) -> None:
        self.rng = rng
        self.pool = pool()
        self.used: set[str] = used if used is not None else set()

    def draw(self, key: str) -> tuple[Block, str]:
        blocks = self.pool[key]
        rng = self.rng
        for _ in range(1000):
            block = blocks[rng.randrange(len(blocks))]
            nat = block.national(rng.randrange(_SUFFIX_SPACE))
            digits = block.cc + nat
            if digits not in self.used:
                self.used.add(digits)
                return block, nat
        raise RuntimeError(f"pool {key} exhausted: ask for fewer contacts")

    def invalid(self) -> str:
        """A number-shaped string libphonenumber rejects as invalid, not seen before."""
        rng = self.rng
        for _ in range(1000):
            kind = rng.randrange(4)
            if kind == 0:
                # Truncated: the last digits fell off in a CRM export.
                _, nat = self.draw("US:FIXED_LINE")
                cut = nat[: -rng.randint(1, 3)]
                raw = f"+1 {cut[:3]} {cut[3:6]} {cut[6:]}".rstrip()
            elif kind == 1:
                # Seven-digit local number: no area code.
                raw = (
                    f"+1 555 01{rng.randrange(100):02d}"
                    if rng.random() < 0.3
                    else (f"{rng.randint(2, 9)}{_digits(rng, 2)}-{_digits(rng, 4)}")
                )
            elif kind == 2:
                # Area codes can never start with 0 or 1.
                area = f"{rng.randint(0, 1)}{_digits(rng, 2)}"
                raw = f"({area}) {rng.randint(2, 9)}{_digits(rng, 2)}-{_digits(rng, 4)}"
            else:
                raw = _digits(rng, rng.randint(1, 5))
            key = "x" + "".join(ch for ch in raw if ch.isdigit())
            if key in self.used:
                continue
            try:
                parsed = phonenumbers.parse(raw, "US")
            except phonenumbers.NumberParseException:
                parsed = None
            if parsed is not None and phonenumbers.is_valid_number(parsed):
                continue
            self.used.add(key)
            return raw
        raise RuntimeError("could not generate a distinct invalid number")


_GARBAGE: tuple[str | None, ...] = (
    "n/a",
    "",
    "call me",
    "unknown",
    None,
    "N/A",
    "none",
    "-",
    "   ",
    "see notes",
    "no phone",
    "TBD",
    "email only",
    "?",
)

# (weight, category) for messy_contacts; rejects add up to ~10%.
_CONTACT_MIX: tuple[tuple[float, str], ...] = (
    (30.0, "e164"),
    (60.0, "messy"),
    (3.0, "foreign"),
    (1.5, "toll_free"),
    (1.0, "voip"),
    (2.0, "invalid"),
    (2.5, "garbage"),
)
_KEPT_REGIONS: tuple[tuple[float, str], ...] = (
    (62.0, "US:FIXED_LINE"),
    (10.0, "CA:FIXED_LINE"),
    (14.0, "GB:FIXED_LINE"),
    (14.0, "GB:MOBILE"),
)
_FOREIGN: tuple[str, ...] = (
    "DE:MOBILE",
    "DE:FIXED_LINE",
    "FR:MOBILE",
    "FR:FIXED_LINE",
    "AU:MOBILE",
    "AU:FIXED_LINE",
    "IN:MOBILE",
    "IN:FIXED_LINE",
    "JM:MOBILE",
    "JM:FIXED_LINE",
)


def _cumulative(mix: Sequence[tuple[float, str]]) -> tuple[list[float], list[str]]:
    total = sum(w for w, _ in mix)
    acc = 0.0
    bounds: list[float] = []
    for w, _ in mix:
        acc += w / total
        bounds.append(acc)
    bounds[-1] = 1.0
    return bounds, [name for _, name in mix]


def _pick(rng: random.Random, table: tuple[list[float], list[str]]) -> str:
    bounds, names = table
    x = rng.random()
    for bound, name in zip(bounds, names, strict=True):
        if x < bound:
            return name
    return names[-1]


def _messy_phone(rng: random.Random, drawer: _Drawer, category: str) -> str | None:
    if category == "e164":
        block, nat = drawer.draw(_pick(rng, _KEPT_TABLE))
        return f"+{block.cc}{nat}"
    if category == "messy":
        block, nat = drawer.draw(_pick(rng, _KEPT_TABLE))
        return _fmt_messy(rng, block, nat)
    if category == "foreign":
        key = _FOREIGN[rng.randrange(len(_FOREIGN))]
        block, nat = drawer.draw(key)
        if block.region == "JM" and rng.random() < 0.5:
            # Written like a US number: only the area code says it is Jamaica.
            return _fmt_nanp_messy(rng, nat)
        return _fmt_international(rng, block.cc, nat) if rng.random() < 0.6 else f"+{block.cc}{nat}"
    if category == "toll_free":
        block, nat = drawer.draw("US:TOLL_FREE" if rng.random() < 0.85 else "GB:TOLL_FREE")
        return _fmt_messy(rng, block, nat) if rng.random() < 0.7 else f"+{block.cc}{nat}"
    if category == "voip":
        block, nat = drawer.draw("GB:VOIP" if rng.random() < 0.8 else "CA:VOIP")
        return _fmt_messy(rng, block, nat) if rng.random() < 0.6 else f"+{block.cc}{nat}"
    if category == "invalid":
        return drawer.invalid()
    return _GARBAGE[rng.randrange(len(_GARBAGE))]


_MIX_TABLE = _cumulative(_CONTACT_MIX)
_KEPT_TABLE = _cumulative(_KEPT_REGIONS)

# --- the other fields ----------------------------------------------------------------------

_FIRST = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily "
    "Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah "
    "Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy "
    "Jacob Kathleen Gary Angela Nicholas Shirley Eric Brenda Jonathan Emma Stephen Anna "
    "Larry Pamela Justin Nicole Scott Samantha Brandon Katherine Oliver Olivia Harry Amelia "
    "Noah Isla Liam Ava Aiden Sophie Mohammed Priya Wei Mei Chloé José María Zoë Seán Siobhán "
    "Gurpreet Aoife Dmitri Fatima"
)
_LAST = _words(
    "Smith,Johnson,Williams,Brown,Jones,Garcia,Miller,Davis,Rodriguez,Martinez,Hernandez,"
    "Lopez,Gonzalez,Wilson,Anderson,Thomas,Taylor,Moore,Jackson,Martin,Lee,Perez,Thompson,"
    "White,Harris,Sanchez,Clark,Ramirez,Lewis,Robinson,Walker,Young,Allen,King,Wright,Scott,"
    "Torres,Nguyen,Hill,Flores,Green,Adams,Nelson,Baker,Hall,Rivera,Campbell,Mitchell,Carter,"
    "Roberts,Evans,Turner,Phillips,Parker,Collins,Edwards,Stewart,Morris,Murphy,Cook,Rogers,"
    "Patel,Singh,Khan,Chen,Wang,Kim,Murray,Kelly,O'Brien,O'Connor,McDonald,MacLeod,Tremblay,"
    "Gagnon,Roy,Côté,Bouchard,Okafor,Novak,Müller,Schmidt,Kowalski,Ivanova,Jones-Smith,"
    "Van der Berg,De la Cruz",
    ",",
)
_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "aol.com",
    "comcast.net",
    "btinternet.com",
    "sky.com",
    "rogers.com",
    "shaw.ca",
    "proton.me",
    "example.org",
    "acme-corp.com",
    "northwind.co.uk",
)
_NOTES = (
    "",
    "",
    "",
    "",
    "Prefers calls after 5pm",
    "Do not call on weekends",
    "Spanish speaker",
    "Callback requested",
    "Left voicemail 3x",
    "VIP customer",
    "Moved house, confirm address",
    "Disputed last invoice",
    "Asked for email follow-up",
    "Renewal due next month",
    "Hard of hearing - speak clearly",
    "Best time: mornings",
    "Referred by a friend",
    "Wrong number reported once; re-verified",
    "Payment plan active",
    "Opted in via web form",
    "Ext. 204 at work",
    "Ask for Mrs. Rossi",
    "Line busy often; retry",
    "Café owner",
)


def _ascii_lower(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _email(rng: random.Random, first: str, last: str) -> str:
    # Mail systems in CRMs mostly hold ASCII local parts even for accented names.
    f = _ascii_lower(first)
    ln = _ascii_lower(last)
    style = rng.randrange(5)
    if style == 0:
        local = f"{f}.{ln}"
    elif style == 1:
        local = f"{f[0]}{ln}"
    elif style == 2:
        local = f"{f}{rng.randint(1, 99)}"
    elif style == 3:
        local = f"{f}_{ln}{rng.randint(60, 99)}"
    else:
        local = f"{ln}.{f[0]}"
    return f"{local}@{_DOMAINS[rng.randrange(len(_DOMAINS))]}"


def _account(rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"ACC-{rng.randrange(10**8):08d}"
    if style == 1:
        return f"{rng.randrange(10**10):010d}"
    return f"CX{rng.randrange(10**6):06d}-{rng.choice('ABCDEFGHJK')}"


def messy_contacts(list_id: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` contacts with ids ``"{list_id}-{i:06d}"`` and a realistic phone mix.

    About 30% already E.164, 60% valid US/CA/GB numbers in other notations, 10% that the
    default directive rejects (foreign, toll-free, VoIP, invalid, garbage). Same list_id,
    count and seed give the same list in any process; no two contacts share a number.
    """
    rng = random.Random(seed)
    drawer = _Drawer(rng)
    first_names, last_names, notes = _FIRST, _LAST, _NOTES
    contacts: list[dict[str, Any]] = []
    append = contacts.append
    for i in range(count):
        first = first_names[rng.randrange(len(first_names))]
        last = last_names[rng.randrange(len(last_names))]
        phone = _messy_phone(rng, drawer, _pick(rng, _MIX_TABLE))
        append(
            {
                "id": f"{list_id}-{i:06d}",
                "phone": phone,
                "firstName": first,
                "lastName": last,
                "email": _email(rng, first, last),
                "accountNumber": _account(rng),
                "notes": notes[rng.randrange(len(notes))],
            }
        )
    return contacts


_BENCH_KEYS: tuple[str, ...] = (
    "US:FIXED_LINE",
    "US:FIXED_LINE",
    "US:FIXED_LINE",
    "CA:FIXED_LINE",
    "GB:FIXED_LINE",
    "GB:MOBILE",
    "US:TOLL_FREE",
    "GB:VOIP",
    *(f"{region}:{_TYPE_KEY[t]}" for region, kinds in _EXTRA_REGIONS.items() for t, _ in kinds),
)


def messy_numbers(count: int, seed: int = 0) -> list[str]:
    """Raw phone strings from many countries, ~5% repeats, ~5% unusable, for benchmarks."""
    rng = random.Random(seed)
    drawer = _Drawer(rng)
    out: list[str] = []
    keys = _BENCH_KEYS
    for _ in range(count):
        x = rng.random()
        if out and x < 0.05:
            out.append(out[rng.randrange(len(out))])
            continue
        if x < 0.08:
            out.append(drawer.invalid())
            continue
        if x < 0.10:
            junk = _GARBAGE[rng.randrange(len(_GARBAGE))]
            out.append(junk if junk is not None else "")
            continue
        block, nat = drawer.draw(keys[rng.randrange(len(keys))])
        style = rng.random()
        if style < 0.35:
            out.append(f"+{block.cc}{nat}")
        else:
            out.append(_fmt_messy(rng, block, nat))
    return out
