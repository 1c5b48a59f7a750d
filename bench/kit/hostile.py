"""bench/hostile: hitcore beside hostile clients, as bench/compare plans (bench/README.md, "Hostile
clients", says what each measures): bench/plans/hostile.plan (slowloris, idle, flood, pipeline,
each beside wrk -t 1 -c 50) and, for `--only vs-nginx`, bench/plans/hostile-vs-nginx.plan
(slowloris beside hitcore and nginx, in interleaved rounds).

Owns only the translation of bench/hostile's command line into bench/compare's: the measurements
are kit/compare.py's run with its @attack option (kit/attack.py, kit/attackers.py), the report
kit/compare_report.py's.
"""
from __future__ import annotations

import argparse
import sys

from . import compare, compare_plan, provision, session

PLANS = provision.BENCH / "plans"
GROUPS = ["slowloris", "idle", "flood", "pipeline", "vs-nginx"]


def translate(argv: list[str]) -> list[str]:
    """bench/hostile's arguments -> bench/compare's: the plan, --only with the variants of the groups
    named (and the unattacked `alone` to compare with), --quick as one round of 3 s, a results name;
    every other option (--hitcore, --out, --rounds, --duration ...) passed on as it is."""
    p = argparse.ArgumentParser(prog="bench/hostile", description=__doc__.splitlines()[0],
                                epilog="Any other option is bench/compare's (--hitcore, --out, --rounds, --duration).")
    p.add_argument("--quick", action="store_true", help="one round of 3 s: checks the script")
    p.add_argument("--only", type=session.choice(GROUPS, "measurement(s)"), metavar="LIST",
                   help="comma-separated subset of " + ", ".join(GROUPS) + " (default: all but vs-nginx; "
                   "vs-nginx runs alone)")
    args, rest = p.parse_known_args(argv)
    only = args.only or GROUPS[:4]
    if "vs-nginx" in only and len(only) > 1:
        p.error("--only vs-nginx runs alone (its own plan)")
    quick = ["--rounds", "1", "--duration", "3"] if args.quick else []
    suffix = "-quick" if args.quick else ""
    if only == ["vs-nginx"]:
        return [str(PLANS / "hostile-vs-nginx.plan"), "--name", "hostile-vs-nginx" + suffix, *quick, *rest]
    plan = compare_plan.parse_plan((PLANS / "hostile.plan").read_text())
    names = [v.name for v in plan.variants if v.name == "alone" or v.name.split("-")[0] in only]
    return [str(PLANS / "hostile.plan"), "--name", "hostile" + suffix, "--only", ",".join(names), *quick, *rest]


def main(argv=None) -> int:
    return compare.main(translate(sys.argv[1:] if argv is None else argv))
