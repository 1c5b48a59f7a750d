"""The hitcore benchmark kit, driven by bench/run.

Layout (one concern per module):
- main.py       the command line and the order of a run (provision, Redis, each server, scaling, report)
- provision.py  apt packages, the two virtualenvs, the cargo builds; each step skipped when done
- procs.py      every child process: bounded runs, servers in their own sessions, stop by PID, the
                process-tree memory sampler, and the cleanup that runs on error and Ctrl-C
- redisctl.py   the run's one password-protected redis-server, and a tiny stdlib RESP client
- servers.py    the servers under test: command lines, environment, readiness, log checks
- loadgen.py    running ab and wrk, bounded in time
- parse.py      pure parsers for ab's and wrk's output (tested by bench/tests/test_parse.py)
- machine.py    the machine description and the versions of every tool
- report.py     the Markdown results file
- rounds.py     --repeat N: the rounds folded into medians, min–max spreads and ratios to the peers
- charts.py     the PNG charts; runs under bench/.venv's python (matplotlib), not the system one
- hostile.py    bench/hostile: slowloris, idle connections, flood, pipelining; hostile_report.py its
                report; attackers.py the hostile clients, run as separate processes
- compare.py    bench/compare: a plan's variants side by side under wrk in interleaved rounds, with
                Redis's CPU and batch sizes; compare_plan.py the plans' grammar and goals (pure),
                compare_report.py its summary.md
- syscalls.py   bench/syscalls: syscalls and context switches per request; perfstat.py runs and
                reads perf stat; pipeclient.py the fixed-count pipelining client
- tail.py       bench/tail: the open-loop tail under oha -q RATE --latency-correction at fractions of
                oha's closed-loop maximum; tail_stats.py oha's JSON, rates, medians, the goal (pure);
                tail_report.py its Markdown; tail_chart.py the latency-vs-rate PNG (matplotlib)

Only the standard library is used outside charts.py, observe_chart.py and tail_chart.py, so bench/run works before any virtualenv exists.
bench/device/run16 imports parse, procs, redisctl, servers, loadgen and machine too, from the
repository or from the copy of kit/ that bench/device/pack puts in its bundle: they must not need
anything outside this folder at import time.
"""
