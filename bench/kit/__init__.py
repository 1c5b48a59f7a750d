"""The hitcore benchmark kit, driven by the tools beside it (bench/run, compare, hostile,
syscalls, tail, api) and by bench/device/run16. bench/README.md's *Layout* table says which
module owns what: the shared libraries (session, procs, measure, redisctl, servers, loadgen, parse,
machine, provision, md, trial) and each tool's own modules, which build on them and not on each other.

Only the standard library is used, so every tool works before any virtualenv exists.
bench/device/run16 imports trial, report, compare_report and the libraries under them too, from
the repository or from the copy of kit/ that bench/device/pack puts in its bundle: no module may
need anything outside this folder at import time.
"""
