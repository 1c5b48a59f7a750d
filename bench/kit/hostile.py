"""bench/hostile: slowloris beside a normal client, hitcore and nginx, as the bench/compare plan
bench/plans/hostile-vs-nginx.plan (bench/README.md, "Hostile clients", says what it measures).

Owns only the translation of bench/hostile's command line into bench/compare's: the measurement is
kit/compare.py's run with its @attack option (kit/attack.py, kit/slowloris.py), the report
kit/compare_report.py's.
"""
from __future__ import annotations

import argparse
import sys

from . import compare, provision

PLAN = provision.BENCH / "plans" / "hostile-vs-nginx.plan"


def translate(argv: list[str]) -> list[str]:
    """bench/hostile's arguments -> bench/compare's: the plan, --quick as one round of 3 s, a results
    name; `--only vs-nginx` is the whole plan (the name the docs use), another --only names variants;
    every other option (--hitcore, --out, --rounds, --duration ...) passed on as it is."""
    p = argparse.ArgumentParser(prog="bench/hostile", description=__doc__.splitlines()[0],
                                epilog="Any other option is bench/compare's (--hitcore, --out, --rounds, --duration).")
    p.add_argument("--quick", action="store_true", help="one round of 3 s: checks the script")
    p.add_argument("--only", metavar="LIST", help="variants of the plan, comma-separated (vs-nginx: all of them)")
    args, rest = p.parse_known_args(argv)
    if args.only and args.only != "vs-nginx":
        rest = ["--only", args.only, *rest]
    quick = ["--rounds", "1", "--duration", "3"] if args.quick else []
    return [str(PLAN), "--name", "hostile-vs-nginx" + ("-quick" if args.quick else ""), *quick, *rest]


def main(argv=None) -> int:
    return compare.main(translate(sys.argv[1:] if argv is None else argv))
