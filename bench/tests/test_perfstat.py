"""Checks bench/syscalls' readers: kit/perfstat.py against real `perf stat -x,` outputs (perf 6.1 on
Debian 12, kernel 6.18), kit/callgrind.py's reading of callgrind dumps, kit/syscalls.py's folding
of rounds, and the report (kit/compare_report.py's syscalls_render) of a recorded quick run
(fixtures/syscalls-summary-quick.json), so that the syscalls-per-request table cannot silently rot.

Fixtures (bench/tests/fixtures/):
- perf-stat-per-thread-hitcore.csv: `perf stat -x, --per-thread -p <hitcore -w 1's supervisor and
  shard>,<redis-server>` around 1000 `ab -k` requests (bench/syscalls --quick). Trimmed to keep it
  small: of the ~4000 lines (365 events × 11 threads) it keeps the header, every non-zero count,
  every line of the failure counters (sys_exit_*, most `<not counted>`) and every writev line.
- perf-stat-sleep.csv: `perf stat -x, -e ...` (no --per-thread) of `sleep 0.1`, its non-zero
  lines and two zero ones.

Run from anywhere, with the system python3 (stdlib only), in well under a second:
    python3 bench/tests/test_perfstat.py        (or: python3 -m unittest discover -s bench/tests)
"""
import json
import sys
import tempfile
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import callgrind, compare_report, measure, parse, perfstat, syscalls  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The fixture's threads: hitcore's supervisor (pid 4974: master, signals, watchdog threads), its
# shard (4977, with its stderr and blocking-pool threads), and redis-server (4936) with its own.
SERVER_TIDS = [4974, 4975, 4976, 4977, 4980, 4981]
REDIS_TIDS = [4936, 4937, 4938, 4939, 4940]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def named_sum(counts: dict[str, int]) -> int:
    """The sum of the per-name syscall counts (everything but the total and context switches)."""
    return sum(v for k, v in counts.items() if perfstat.is_syscall(k))


class ParseTest(unittest.TestCase):
    def test_per_thread(self):
        threads = perfstat.parse(fixture("perf-stat-per-thread-hitcore.csv"))
        self.assertEqual(len(threads), 11)
        shard = threads["hitcore-shard0-4977"]
        self.assertEqual(shard["raw_syscalls:sys_enter"], 3707)
        self.assertEqual(shard["syscalls:sys_enter_recvfrom"], 1950)
        self.assertEqual(shard["syscalls:sys_enter_sendto"], 1045)
        self.assertEqual(shard["syscalls:sys_enter_io_uring_enter"], 537)
        self.assertEqual(shard["context-switches"], 279)
        self.assertEqual(shard["syscalls:sys_exit_recvfrom"], 857)  # the filtered (ret < 0) counter
        self.assertEqual(shard["syscalls:sys_enter_writev"], 0)
        # <not counted>: the thread never ran while counting; it reads as 0, not as missing.
        self.assertEqual(threads["bio_lazy_free-4939"]["syscalls:sys_exit_recvfrom"], 0)
        self.assertEqual(threads["redis-server-4936"]["syscalls:sys_enter_write"], 45)

    def test_aggregated(self):
        threads = perfstat.parse(fixture("perf-stat-sleep.csv"))
        self.assertEqual(list(threads), ["all"])
        counts = threads["all"]
        self.assertEqual(counts["raw_syscalls:sys_enter"], 109)
        self.assertEqual(counts["syscalls:sys_enter_openat"], 30)
        self.assertEqual(counts["syscalls:sys_enter_iopl"], 0)
        self.assertEqual(counts["context-switches"], 1)
        # The named tracepoints account for every syscall raw_syscalls saw.
        named = perfstat.aggregate(threads, {})["all"]
        self.assertEqual(named_sum(named), named["total"])

    def test_no_counts(self):
        with self.assertRaises(perfstat.PerfError):
            perfstat.parse("# started on Wed Dec  2 05:10:04 2026\n\n")

    def test_names(self):
        self.assertEqual(perfstat.thread_id("hitcore-shard0-4977"), 4977)
        self.assertEqual(perfstat.thread_id("bio_close_file-4937"), 4937)
        self.assertIsNone(perfstat.thread_id("all"))
        self.assertEqual(perfstat.syscall_name("syscalls:sys_enter_recvfrom"), "recvfrom")
        self.assertEqual(perfstat.syscall_name("syscalls:sys_exit_recvfrom"), "recvfrom:err")
        self.assertEqual(perfstat.syscall_name("raw_syscalls:sys_enter"), "total")
        self.assertEqual(perfstat.syscall_name("context-switches"), "context-switches")
        self.assertFalse(perfstat.is_syscall("recvfrom:err"))
        self.assertFalse(perfstat.is_syscall("cs-voluntary"))
        self.assertTrue(perfstat.is_syscall("io_uring_enter"))

    def test_event_args(self):
        args = perfstat.event_args(failures=["recvfrom"])
        self.assertEqual(args, ["-e", "raw_syscalls:sys_enter,syscalls:sys_enter_*,context-switches",
                                "-e", "syscalls:sys_exit_recvfrom", "--filter", "ret < 0"])


class AggregateTest(unittest.TestCase):
    def setUp(self):
        roles = {tid: "server" for tid in SERVER_TIDS}
        roles.update({tid: "redis" for tid in REDIS_TIDS})
        self.roles = perfstat.aggregate(perfstat.parse(fixture("perf-stat-per-thread-hitcore.csv")), roles)

    def test_roles(self):
        self.assertEqual(set(self.roles), {"server", "redis"})
        server = self.roles["server"]
        # The shard's 3707, the supervisor's master thread 2 and watchdog 1.
        self.assertEqual(server["total"], 3710)
        self.assertEqual(server["wait4"], 1)
        self.assertEqual(server["recvfrom:err"], 857)
        self.assertNotIn("writev", server)  # zero counts are dropped
        # perf enables and disables its ~4000 counters one after another, so a thread's total and
        # its per-name counts can differ by a few at the edges of the window: 8 of 3710 here.
        self.assertEqual(named_sum(server), 3702)
        redis = self.roles["redis"]
        self.assertEqual(redis["total"], 146)
        self.assertEqual((redis["read"], redis["write"], redis["epoll_wait"]), (47, 45, 46))
        self.assertEqual(named_sum(redis), 142)

    def test_unknown_thread(self):
        roles = perfstat.aggregate(perfstat.parse(fixture("perf-stat-per-thread-hitcore.csv")), {4977: "server"})
        self.assertEqual(roles["server"]["total"], 3707)
        self.assertEqual(roles["other"]["total"], 146 + 3)

    def test_switch_deltas(self):
        before = {1: (10, 5), 2: (0, 0), 3: (7, 7)}
        after = {1: (15, 9), 2: (3, 1), 4: (100, 100)}  # 3 has gone, 4 is new: both left out
        deltas = measure.switch_deltas(before, after, {1: "server", 2: "redis"})
        self.assertEqual(deltas, {"server": {"voluntary": 5, "nonvoluntary": 4},
                                  "redis": {"voluntary": 3, "nonvoluntary": 1}})


# The head and the last line of a real dump: hitcore's shard after `callgrind_control -d`
# (valgrind 3.19), 5000 keep-alive requests after `callgrind_control -z`.
CALLGRIND_DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 30931
cmd:  /work/wt/perf-counts/target/release/hitcore
part: 1

desc: Timerange: Basic block 0 - 6724316
desc: Trigger: dump

positions: line
events: Ir
summary: 24692128


ob=(7) /work/wt/perf-counts/target/release/hitcore
fn=(4540) httparse::simd::runtime::match_uri_vectored
37 15000
totals: 24693178
"""


class CallgrindTest(unittest.TestCase):
    def test_totals(self):
        self.assertEqual(callgrind.parse_totals(CALLGRIND_DUMP), 24692128)
        self.assertEqual(callgrind.parse_totals("events: Ir\ntotals: 42\n"), 42)
        self.assertIsNone(callgrind.parse_totals("events: Ir\n"))

    def test_newest_dumps(self):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            for name in ("callgrind.out.10", "callgrind.out.10.1", "callgrind.out.10.2",
                         "callgrind.out.11.1", "callgrind.out.12.3"):
                (folder / name).write_text(CALLGRIND_DUMP.replace("24692128", name.rsplit(".", 1)[1]))
            newest = callgrind.newest_dumps(folder, {10, 11})
            self.assertEqual({pid: p.name for pid, p in newest.items()},
                             {10: "callgrind.out.10.2", 11: "callgrind.out.11.1"})
            self.assertEqual(callgrind.read_totals(folder, [10, 11]), {10: 2, 11: 1})

    def test_wrap(self):
        argv = callgrind.wrap(["nginx", "-c", "x"], Path("/tmp/cg"))
        self.assertEqual(argv[:3], ["valgrind", "--tool=callgrind", "--trace-children=yes"])
        self.assertIn("--callgrind-out-file=/tmp/cg/callgrind.out.%p", argv)
        self.assertEqual(argv[-3:], ["nginx", "-c", "x"])


class SyscallsTest(unittest.TestCase):
    def test_the_pipelining_clients_summary_reads_as_abs(self):
        text = ("Concurrency Level:      50\nPipeline depth:         16\nTime taken for tests:   1.234 seconds\n"
                "Complete requests:      2000\nFailed requests:        3\nNon-2xx responses:      1\n"
                "Requests per second:    1620.75 [#/sec] (mean)\n")
        counts = parse.parse_ab(text)
        self.assertEqual((counts["complete"], counts["failed"], counts["non_2xx"], counts["ok_2xx"]), (2000, 3, 1, 1996))

    def test_fold(self):
        def m(rnd, total, recv=None, error=None):
            counts = {"server": {"total": total}}
            if recv is not None:
                counts["server"]["recvfrom"] = recv
            return {"server": "hitcore", "shape": "keepalive", "round": rnd, "error": error,
                    "per_unit": {r: syscalls.per_unit(c, 1000) for r, c in counts.items()},
                    "redis_commands_per_request": 0.02 * rnd}
        folded = syscalls.fold([m(1, 3500, 2000), m(2, 3700), m(3, 3600, 2100), m(4, 9999, error="boom")])
        cell = folded["hitcore"]["keepalive"]
        self.assertEqual(cell["rounds"], 3)
        total = cell["roles"]["server"]["total"]
        self.assertEqual((total["median"], total["min"], total["max"]), (3.6, 3.5, 3.7))
        # A name a round did not see counts 0 in that round.
        self.assertEqual(cell["roles"]["server"]["recvfrom"]["values"], [2.0, 0.0, 2.1])
        self.assertAlmostEqual(cell["redis_commands_per_request"]["median"], 0.04)

    def test_fold_instructions(self):
        records = [{"server": "nginx", "shape": "close", "round": r, "per_request": v, "error": None}
                   for r, v in ((1, 10900.0), (2, 11000.0), (3, 10950.0))]
        records.append({"server": "nginx", "shape": "close", "round": 4, "error": "boom"})
        cell = syscalls.fold_instructions(records)["nginx"]["close"]
        self.assertEqual((cell["median"], cell["min"], cell["max"]), (10950.0, 10900.0, 11000.0))


class ReportTest(unittest.TestCase):
    def test_a_recorded_quick_run(self):
        # bench/syscalls --quick --only hitcore,nginx on the 2-core VM, its per-thread counts trimmed.
        summary = json.loads(fixture("syscalls-summary-quick.json"))
        text = compare_report.syscalls_render(summary)
        order = [text.index(h) for h in ("## Machine", "## Method", "## keep-alive", "## a connection per request",
                                         "## pipelined", "## Every syscall", "## Idle", "## Problems")]
        self.assertEqual(order, sorted(order))
        self.assertIn("| hitcore -w 1 | 1.16 | 0.32; vol. 0.02 | sendto 1.03, recvfrom 0.05,", text)
        self.assertIn("| nginx, 1 worker (static) | 2.18 | 0.09; vol. 0.02 |", text)
        self.assertIn("| total | 1.159 | 2.180 | 4.292 | 6.047 | 0.371 | 1.245 |", text)
        self.assertIn("- hitcore close round 1: the counter grew by 1999, not 2000", text)


if __name__ == "__main__":
    unittest.main()
