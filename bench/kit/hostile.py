"""bench/hostile: slowloris beside a normal client, hitcore and nginx: bench/compare over
bench/plans/hostile-vs-nginx.plan (bench/README.md, "Hostile clients", says what it measures),
with its @attack option (kit/attack.py, kit/slowloris.py). Every option is bench/compare's
(--quick, --only VARIANTS, --hitcore, --rounds ...); `--only vs-nginx`, the name the docs use,
is the whole plan.
"""
from __future__ import annotations

import sys

from . import compare, provision

PLAN = provision.BENCH / "plans" / "hostile-vs-nginx.plan"


def translate(argv: list[str]) -> list[str]:
    """bench/hostile's arguments -> bench/compare's."""
    argv = list(argv)
    for i in range(len(argv) - 1):
        if argv[i:i + 2] == ["--only", "vs-nginx"]:
            argv = argv[:i] + argv[i + 2:]
            break
    return [str(PLAN), "--name", "hostile-vs-nginx", *argv]


def main(argv=None) -> int:
    return compare.main(translate(sys.argv[1:] if argv is None else argv))
