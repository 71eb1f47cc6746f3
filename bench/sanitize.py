"""Sanitizer throughput against phonenumbers as shipped. Prints figures; not a test.

    .venv/bin/python bench/sanitize.py [--count 200000] [--seed 7] [--generator own|mix|seed]

1. Builds one corpus of messy strings (many countries and formats, ~5% duplicates).
2. Runs the as-shipped reference loop (parse with a default region, is_valid_number,
   E.164, number_type, region_code_for_number) in a fresh subprocess, because
   cxsweep turns on ``phonenumbers.enable_pattern_cache()`` for the whole process and
   the reference must run without it.
3. Runs cxsweep's Sanitizer (enrichment on: carrier and time zones) over the same
   corpus in pages of 1,000, as the pipeline does.
4. Prints numbers/s of each, the ratio, and whether every verdict agreed (E.164,
   region, type); then checks, untimed, that the cheaper enrichment paths give the
   same carrier and time zones as the stock calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGION = "US"
PAGE = 1000

Outcome = tuple[str, str, str | None] | None


# ---------------------------------------------------------------- corpus


def _own_corpus(count: int, seed: int) -> list[str]:
    """Messy strings built from libphonenumber's example numbers for every region."""
    import phonenumbers
    from phonenumbers import PhoneNumberFormat as F

    rng = random.Random(seed)
    bases: list[phonenumbers.PhoneNumber] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.VOIP,
        ):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                bases.append(example)
    # The lists being cleaned are mostly North American and British.
    for region, weight in (("US", 12), ("CA", 3), ("GB", 4)):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                bases.extend([example] * weight * 8)
    garbage = ["", "   ", "n/a", "unknown", "call me", "+", "()", "123", "0", "+999 123 456"]
    formats = (F.E164, F.INTERNATIONAL, F.NATIONAL, F.RFC3966)
    out: list[str] = []
    for _ in range(count):
        x = rng.random()
        if out and x < 0.05:
            out.append(out[rng.randrange(len(out))])
            continue
        if x < 0.07:
            junk = rng.choice(garbage)
            out.append(junk + str(rng.randrange(10**6)) if rng.random() < 0.7 else junk)
            continue
        base = rng.choice(bases)
        nsn = str(base.national_number)
        # Vary the last digits: stays in the same number range, often still valid.
        keep = max(2, len(nsn) - 5)
        nsn = nsn[:keep] + "".join(rng.choice("0123456789") for _ in nsn[keep:])
        number = phonenumbers.PhoneNumber(
            country_code=base.country_code,
            national_number=int(nsn),
            italian_leading_zero=base.italian_leading_zero,
            number_of_leading_zeros=base.number_of_leading_zeros,
        )
        text = phonenumbers.format_number(number, rng.choice(formats))
        style = rng.random()
        if style < 0.1:
            text = text.replace("+", "00", 1)
        elif style < 0.2:
            text = text.replace(" ", "-")
        elif style < 0.25:
            text = f"{text} ext. {rng.randrange(10, 9999)}"
        elif style < 0.3:
            text = f"  {text}\t"
        elif style < 0.33:
            text = text[:-1]
        out.append(text)
    return out


def build_corpus(count: int, seed: int, generator: str) -> tuple[list[str], str]:
    """``own`` (the default) spans every region libphonenumber knows: the issue's
    "many countries" corpus, the one on which the as-shipped library keeps recompiling
    its patterns (~1,200 of them through re's 512-entry cache). ``seed`` is
    devtools.seed's dialing-list-style strings (22 regions: the patterns fit re's cache,
    so the as-shipped library is already fast there); ``mix`` is half of each."""
    if generator in ("mix", "seed"):
        try:
            from devtools.seed import messy_numbers
        except ImportError:
            if generator == "seed":
                raise
        else:
            if generator == "seed":
                return messy_numbers(count, seed), "devtools.seed.messy_numbers"
            half = count // 2
            corpus = messy_numbers(half, seed) + _own_corpus(count - half, seed)
            random.Random(seed).shuffle(corpus)
            return corpus, "devtools.seed.messy_numbers + bench's own generator, 50/50"
    return _own_corpus(count, seed), "bench's own generator (every region)"


# ---------------------------------------------------------------- reference (subprocess)


def reference_main(corpus_path: str, out_path: str) -> None:
    """The as-shipped loop. Runs in a process that never imports cxsweep."""
    import phonenumbers
    from phonenumbers import re_util

    assert getattr(re_util, "_COMPILED_PATTERNS", None) is None, "pattern cache is on"
    corpus = json.loads(Path(corpus_path).read_text(encoding="utf-8"))
    names = {
        value: name
        for name, value in vars(phonenumbers.PhoneNumberType).items()
        if name.isupper() and isinstance(value, int)
    }
    E164 = phonenumbers.PhoneNumberFormat.E164
    results: list[Outcome] = []
    started = time.perf_counter()
    for raw in corpus:
        try:
            number = phonenumbers.parse(raw, DEFAULT_REGION)
        except phonenumbers.NumberParseException:
            results.append(None)
            continue
        if not phonenumbers.is_valid_number(number):
            results.append(None)
            continue
        results.append(
            (
                phonenumbers.format_number(number, E164),
                names[phonenumbers.number_type(number)],
                phonenumbers.region_code_for_number(number),
            )
        )
    elapsed = time.perf_counter() - started
    Path(out_path).write_text(json.dumps({"elapsed": elapsed, "results": results}))


def run_reference(corpus: list[str]) -> tuple[float, list[Outcome]]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = os.path.join(tmp, "corpus.json")
        out_path = os.path.join(tmp, "reference.json")
        Path(corpus_path).write_text(json.dumps(corpus), encoding="utf-8")
        subprocess.run([sys.executable, __file__, "--reference", corpus_path, out_path], check=True)
        data = json.loads(Path(out_path).read_text())
    results: list[Outcome] = [tuple(r) if r is not None else None for r in data["results"]]
    return data["elapsed"], results


# ---------------------------------------------------------------- cxsweep


def run_cxsweep(corpus: list[str], *, enrich: bool = True) -> tuple[float, list]:
    from cxsweep.phone.numbers import Directive, Sanitizer

    # Every region and type allowed, extensions kept: judged only on what the
    # reference judges, so the verdicts are comparable one for one.
    directive = Directive(
        allowed_regions=frozenset(),
        blocked_types=frozenset(),
        default_region=DEFAULT_REGION,
        extensions="drop",
    )
    sanitizer = Sanitizer(directive, enrich=enrich)
    verdicts = []
    started = time.perf_counter()
    for start in range(0, len(corpus), PAGE):
        verdicts.extend(sanitizer.check_many(corpus[start : start + PAGE]))
    return time.perf_counter() - started, verdicts


def pattern_cache_loop(corpus: list[str]) -> float:
    """The reference loop in this process (pattern cache on), for context."""
    import phonenumbers

    E164 = phonenumbers.PhoneNumberFormat.E164
    started = time.perf_counter()
    for raw in corpus:
        try:
            number = phonenumbers.parse(raw, DEFAULT_REGION)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            phonenumbers.format_number(number, E164)
            phonenumbers.number_type(number)
            phonenumbers.region_code_for_number(number)
    return time.perf_counter() - started


def enrichment_mismatches(corpus: list[str], verdicts: list) -> int:
    import phonenumbers
    from phonenumbers import carrier, timezone

    bad = 0
    for raw, verdict in zip(corpus, verdicts, strict=True):
        if not verdict.kept:
            continue
        number = phonenumbers.parse(raw, DEFAULT_REGION)
        stock_carrier = carrier.name_for_number(number, "en") or None
        stock_tz = tuple(timezone.time_zones_for_number(number))
        if (verdict.carrier, verdict.time_zones) != (stock_carrier, stock_tz):
            bad += 1
            if bad <= 5:
                print(
                    f"  enrichment differs for {raw!r}: {verdict.carrier!r} {verdict.time_zones}"
                    f" vs {stock_carrier!r} {stock_tz}"
                )
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--generator", choices=("own", "mix", "seed"), default="own")
    parser.add_argument("--reference", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        reference_main(*args.reference)
        return

    sys.path.insert(0, str(ROOT))
    corpus, source = build_corpus(args.count, args.seed, args.generator)
    distinct = len(set(corpus))
    print(
        f"corpus: {len(corpus):,} strings from {source}; "
        f"{len(corpus) - distinct:,} repeats ({(len(corpus) - distinct) / len(corpus):.1%})"
    )

    ref_elapsed, reference = run_reference(corpus)
    ref_rate = len(corpus) / ref_elapsed
    print(f"phonenumbers as shipped (no pattern cache): {ref_rate:>10,.0f} numbers/s")

    cx_elapsed, verdicts = run_cxsweep(corpus, enrich=True)
    cx_rate = len(corpus) / cx_elapsed
    print(f"cxsweep Sanitizer, enrichment on:           {cx_rate:>10,.0f} numbers/s")
    print(f"ratio: {cx_rate / ref_rate:.2f}x (target >= 3.5x)")

    disagreements = 0
    for raw, ref, verdict in zip(corpus, reference, verdicts, strict=True):
        mine: Outcome = (verdict.e164, verdict.line_type, verdict.region) if verdict.kept else None
        if mine != ref:
            disagreements += 1
            if disagreements <= 5:
                print(f"  differs for {raw!r}: reference {ref}, cxsweep {mine} {verdict.reason}")
    kept = sum(1 for v in verdicts if v.kept)
    print(
        f"verdicts: {'all agree' if not disagreements else f'{disagreements:,} DISAGREE'} "
        f"({kept:,} kept, {len(corpus) - kept:,} rejected)"
    )

    # Context, untimed against the target.
    plain_elapsed, _ = run_cxsweep(corpus, enrich=False)
    print(
        f"(context) cxsweep Sanitizer, no enrichment: {len(corpus) / plain_elapsed:>10,.0f}"
        " numbers/s"
    )
    print(
        f"(context) reference loop + pattern cache:   "
        f"{len(corpus) / pattern_cache_loop(corpus):>10,.0f} numbers/s"
    )
    mismatched = enrichment_mismatches(corpus, verdicts)
    print(
        f"enrichment vs stock carrier/time-zone calls: "
        f"{'identical' if not mismatched else f'{mismatched:,} differ'}"
    )


if __name__ == "__main__":
    main()
