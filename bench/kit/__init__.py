"""The hitcore benchmark kit, driven by the tools beside it (bench/run, compare, hostile, layout,
observe, syscalls, tail) and by bench/device/run16. bench/README.md's "Layout" table says which
module owns what; the libraries every tool shares:

- session.py   the shell of a run: signals and cleanup, results name and folder, summary header, charts
- procs.py     every child process: bounded runs, servers in their own sessions, stop by PID, the
               process-tree memory sampler, and the cleanup that runs on error and Ctrl-C
- measure.py   what is read while a load runs: /proc, ss, listen counters, sampler and prober
- redisctl.py  the run's password-protected redis-server(s), and a tiny stdlib RESP client
- servers.py   the servers under test: command lines, environment, readiness, log checks
- loadgen.py, parse.py   running ab and wrk, bounded in time; pure parsers of their output
- machine.py, provision.py   the machine description and versions; apt, virtualenvs, cargo builds
- md.py        the Markdown every report writes: numbers, tables, the machine section, notes
- charts.py    every PNG (under bench/.venv's matplotlib)

Only the standard library is used outside charts.py, so every tool works before any virtualenv
exists. bench/device/run16 imports parse, procs, redisctl, servers, loadgen and machine too, from
the repository or from the copy of kit/ that bench/device/pack puts in its bundle: no module may
need anything outside this folder at import time.
"""
