"""bench/compare's plans (bench/plans/*.plan): named variants, each a command line and its
environment, and goals; their grammar, --only and --set, the placeholders filled, the goals checked.

One statement per line, `#` starting a comment: `title TEXT`, `base NAME`, `variant NAME
[@OPTION...] [KEY=VALUE...] COMMAND...` in shell words, `goal NAME >= FACTOR OTHER` (or `NAME p99
<= FACTOR OTHER`), `defaults --OPTION N ...`; bench/README.md, *Variants side by side*, says what
each does. Pure functions, standard library only: bench/tests/test_compare.py tests them.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ENV = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
KIT_PLACEHOLDERS = {"bind", "port", "redis_url", "tmp", "hitcore", "tokio", "cpus", "connections", "nginx_conf",
                    "tls_cert", "tls_key"}


class PlanError(ValueError):
    pass


@dataclass
class Variant:
    name: str
    argv: list[str]                              # with {placeholders} still in
    env: dict[str, str] = field(default_factory=dict)
    shards: int = 0                              # hitcore's shards (0: not hitcore)
    procs: int = 1                               # processes that mean "every worker is up"
    per_cpu: bool = False                        # @shards=cpus: one shard per CPU of the run
    procs_given: bool = False                    # @procs or @shards said how many processes
    https: bool = False                          # @https
    close: bool = False                          # @close
    flood: int = 0                               # @flood=N: handshake-flood clients beside wrk
    attack: int = 0                              # @attack=slowloris:N: slowloris connections beside wrk

    def readiness(self, cpus: int) -> tuple[int, int]:
        """(processes, shards) that mean "every worker is up" on a run with `cpus` CPUs."""
        if self.per_cpu:
            return 1 + cpus, cpus
        if not self.procs_given and "nginx_conf" in self.placeholders():
            return 1 + cpus, 0                   # nginx's master and one worker per CPU
        return self.procs, self.shards

    def words(self) -> list[str]:
        return list(self.env.values()) + self.argv

    def placeholders(self) -> set[str]:
        return {name for word in self.words() for name in PLACEHOLDER.findall(word)}

    @property
    def uses_redis(self) -> bool:
        return "redis_url" in self.placeholders()


# A goal's figure: (its key in a wrk result, the comparison, how the report names it).
METRICS = {"rps": (">=", "≥", "median req/s"), "p99": ("<=", "≤", "median p99 ms")}


@dataclass
class Goal:
    name: str
    factor: float
    other: str
    metric: str = "rps"

    def text(self) -> str:
        what = "" if self.metric == "rps" else f"{self.metric} "
        return f"{self.name} {what}{METRICS[self.metric][1]} {self.factor:g}× {self.other}"


DEFAULTABLE = ("--connections", "--duration", "--threads", "--rounds")


@dataclass
class Plan:
    title: str
    variants: list[Variant]
    base: str
    goals: list[Goal]
    defaults: list[str] = field(default_factory=list)   # bench/compare options, before the command line's

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def placeholders(self) -> set[str]:
        return set().union(*(v.placeholders() for v in self.variants))

    def only(self, names: list[str]) -> None:
        """Keeps the variants named (`--only`), the goals between two of them, and the base if
        kept (else the first variant left); PlanError naming an unknown one."""
        known = [v.name for v in self.variants]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise PlanError(f"--only: no variant {', '.join(unknown)} (variants: {', '.join(known)})")
        self.variants = [v for v in self.variants if v.name in names]
        self.goals = [g for g in self.goals if g.name in names and g.other in names]
        if self.base not in names:
            self.base = self.variants[0].name


def parse_variant(name: str, words: list[str]) -> Variant:
    if not NAME.match(name):
        raise PlanError(f"variant name {name!r}: letters, digits, '.', '_' and '-' only")
    v = Variant(name, [])
    i = 0
    while i < len(words) and words[i].startswith("@"):
        option, _, value = words[i][1:].partition("=")
        if option == "shards" and value == "cpus":
            v.per_cpu = v.procs_given = True
        elif option in ("shards", "procs"):
            if not value.isdigit() or int(value) < 1:
                raise PlanError(f"variant {name}: @{option} needs a whole number ≥ 1, not {value!r}")
            setattr(v, option, int(value))
            v.procs_given = True
            if option == "shards":
                v.procs = 1 + int(value)
        elif option in ("https", "close") and not value:
            setattr(v, option, True)
        elif option == "flood" and value.isdigit() and int(value) >= 1:
            v.flood = int(value)
        elif option == "attack" and re.fullmatch(r"slowloris:[1-9]\d*", value):
            v.attack = int(value.split(":")[1])
        else:
            raise PlanError(f"variant {name}: unknown option {words[i]!r} "
                            "(known: @shards=N, @shards=cpus, @procs=N, @https, @close, @flood=N, @attack=slowloris:N)")
        i += 1
    while i < len(words) and ENV.match(words[i]):
        key, value = ENV.match(words[i]).groups()
        v.env[key] = value
        i += 1
    v.argv = words[i:]
    if not v.argv:
        raise PlanError(f"variant {name}: no command")
    if v.flood and not v.https:
        raise PlanError(f"variant {name}: @flood needs @https (it floods TLS handshakes)")
    return v


def parse_plan(text: str) -> Plan:
    title, base, variants, goals, defaults = "", None, [], [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            raise PlanError(f"line {number}: {error}") from None
        if not words:
            continue
        keyword, rest = words[0], words[1:]
        try:
            if keyword == "title":
                title = " ".join(rest)
            elif keyword == "base":
                if len(rest) != 1:
                    raise PlanError("base takes one variant name")
                base = rest[0]
            elif keyword == "variant":
                if not rest:
                    raise PlanError("variant needs a name and a command")
                if any(v.name == rest[0] for v in variants):
                    raise PlanError(f"variant {rest[0]} is defined twice")
                variants.append(parse_variant(rest[0], rest[1:]))
            elif keyword == "goal":
                goals.append(parse_goal(rest))
            elif keyword == "defaults":
                defaults += parse_defaults(rest)
            else:
                raise PlanError(f"unknown statement {keyword!r} (title, base, variant, goal, defaults)")
        except PlanError as error:
            raise PlanError(f"line {number}: {error}") from None
    if not variants:
        raise PlanError("the plan has no variant")
    names = [v.name for v in variants]
    base = base or names[0]
    for name in [base] + [g.name for g in goals] + [g.other for g in goals]:
        if name not in names:
            raise PlanError(f"{name!r} is not a variant of the plan (variants: {', '.join(names)})")
    return Plan(title or "bench/compare", variants, base, goals, defaults)


def parse_goal(words: list[str]) -> Goal:
    """`NAME >= FACTOR OTHER` (req/s) or `NAME p99 <= FACTOR OTHER`."""
    metric = words[1] if len(words) == 5 and words[1] in METRICS else "rps"
    if metric != "rps":
        words = words[:1] + words[2:]
    if len(words) != 4 or words[1] != METRICS[metric][0]:
        raise PlanError("goal takes the form: goal NAME >= FACTOR OTHER, or goal NAME p99 <= FACTOR OTHER")
    try:
        factor = float(words[2])
    except ValueError:
        raise PlanError(f"goal: {words[2]!r} is not a number") from None
    return Goal(words[0], factor, words[3], metric)


def parse_defaults(words: list[str]) -> list[str]:
    """`defaults --connections 10000 --duration 10` -> the same words, checked: pairs of a known
    option and a whole number ≥ 1."""
    if not words or len(words) % 2:
        raise PlanError("defaults takes pairs: --OPTION N ...")
    for option, value in zip(words[::2], words[1::2]):
        if option not in DEFAULTABLE:
            raise PlanError(f"defaults: {option!r} is not one of {', '.join(DEFAULTABLE)}")
        if not value.isdigit() or int(value) < 1:
            raise PlanError(f"defaults: {option} needs a whole number ≥ 1, not {value!r}")
    return list(words)


def parse_sets(items: list[str]) -> dict[str, str]:
    """`--set NAME=VALUE` arguments -> {name: value}; the kit's own names cannot be overridden."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise PlanError(f"--set {item!r}: expected NAME=VALUE, NAME in lower case")
        if name in KIT_PLACEHOLDERS and name not in ("hitcore", "tokio"):
            raise PlanError(f"--set {name}: the kit fills that placeholder itself")
        out[name] = value
    return out


def fill(word: str, values: dict[str, str]) -> str:
    """Replaces every {name} in `word`; an unknown name is an error naming it."""
    def one(match):
        name = match.group(1)
        if name not in values:
            raise PlanError(f"placeholder {{{name}}} has no value (give it with --set {name}=VALUE)")
        return str(values[name])
    return PLACEHOLDER.sub(one, word)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 3)


def check_goals(plan: Plan, medians: dict[str, dict]) -> list[dict]:
    """Each goal against the medians ({variant: {"rps", "p99_ms", ...}}): {"goal", "figures" (what
    the figures are), "rps" and "other_rps" (the goal's two figures), "ratio", "met" (None when a
    figure is missing)}."""
    out = []
    for g in plan.goals:
        key = "rps" if g.metric == "rps" else f"{g.metric}_ms"
        mine, theirs = (medians.get(n, {}).get(key) for n in (g.name, g.other))
        r = ratio(mine, theirs)
        met = None if r is None else (r >= g.factor if g.metric == "rps" else r <= g.factor)
        out.append({"goal": g.text(), "name": g.name, "other": g.other, "factor": g.factor,
                    "figures": METRICS[g.metric][2], "rps": mine, "other_rps": theirs, "ratio": r, "met": met})
    return out
