"""Checks the kit's process and machine helpers that bench/run, bench/hostile and bench/device/run16
share: procs.run (with while_running), procs.cpu_seconds, procs.Service.stop on a process tree,
servers.wait_ready (with a ready line), loadgen's raw files and its binary/env options,
machine's sysctl / open-files / describe, and the /proc/stat and schedstat readers on
texts copied from this machine's /proc. Real short-lived processes on free 127.0.0.1 ports, the
system python3 standing in for the servers and load generators; about ten seconds (Service.stop
gives a stopped tree's orphans 5 s to exit), no network.

    python3 bench/tests/test_procs.py        (or: python3 -m unittest discover -s bench/tests)
"""
import os
import random
import resource
import sys
import tempfile
import time
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import loadgen, machine, measure, procs, redisctl, servers  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A stand-in server: answers GET / with 200, prints READY once per "worker" after a short delay.
SERVER = r"""
import http.server, sys, threading, time
port, workers = int(sys.argv[1]), int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "1"); self.end_headers(); self.wfile.write(b"1")
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
for _ in range(workers):
    time.sleep(0.3)
    print("worker READY", flush=True)
time.sleep(60)
"""


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


class RunTest(unittest.TestCase):
    def test_while_running_sees_the_live_child(self):
        seen = {}

        def during(proc):
            seen["alive"] = proc.poll() is None
            seen["pid"] = proc.pid
            seen["cpu"] = procs.cpu_seconds([proc.pid])

        result = procs.run([sys.executable, "-c", "import time; time.sleep(0.5); print('done')"],
                           timeout=20, while_running=during)
        self.assertTrue(result.ok)
        self.assertEqual(result.stdout.strip(), "done")
        self.assertTrue(seen["alive"])
        self.assertGreaterEqual(seen["cpu"], 0.0)
        self.assertFalse(os.path.exists(f"/proc/{seen['pid']}"))  # reaped

    def test_steady_window_reads_twice_while_the_load_runs(self):
        # A 1 s window: one reading 0.2 s in, one 0.3 s before its end, both while the (2 s) load runs.
        marks, sample = measure.steady_window(1.0, 0.2, 0.3, lambda proc: (time.monotonic(), proc.poll()))
        began = time.monotonic()
        result = procs.run([sys.executable, "-c", "import time; time.sleep(2)"], timeout=20, while_running=sample)
        self.assertTrue(result.ok)
        self.assertEqual([alive for _, alive in marks], [None, None])
        self.assertGreaterEqual(marks[0][0] - began, 0.2)
        self.assertGreaterEqual(marks[1][0] - began, 0.7)
        self.assertGreater(marks[1][0], marks[0][0])

    def test_timeout_counts_the_callback_and_stops_the_child(self):
        began = time.monotonic()
        result = procs.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1.0,
                           while_running=lambda proc: time.sleep(0.5))
        self.assertTrue(result.timed_out)
        self.assertLess(time.monotonic() - began, 15)

    def test_an_exception_in_the_callback_stops_the_child(self):
        pids = []

        def fail(proc):
            pids.append(proc.pid)
            raise KeyboardInterrupt("as a signal handler would")

        with self.assertRaises(KeyboardInterrupt):
            procs.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=60, while_running=fail)
        self.assertFalse(os.path.exists(f"/proc/{pids[0]}"))


class CpuSecondsTest(unittest.TestCase):
    def test_own_cpu_time_in_seconds_and_gone_processes_count_zero(self):
        # Burn 0.3 s of CPU (however long that takes on a loaded machine), then compare with what
        # the kernel tells this process of itself: the same seconds, to the clock tick.
        def own():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime
        before, own_before = procs.cpu_seconds([os.getpid()]), own()
        deadline = time.monotonic() + 60
        while own() - own_before < 0.3 and time.monotonic() < deadline:
            busy(0.01)
        after, own_after = procs.cpu_seconds([os.getpid()]), own()
        self.assertAlmostEqual(after - before, own_after - own_before, delta=0.05)
        self.assertEqual(procs.cpu_seconds([2 ** 22 + 12345]), 0.0)  # above pid_max: never a process


class ServiceTest(unittest.TestCase):
    def test_stop_reaches_every_descendant(self):
        with tempfile.TemporaryDirectory() as tmp:
            service = procs.Service("tree", ["sh", "-c", "sleep 60 & sleep 60 & wait"], Path(tmp) / "tree.log")
            deadline = time.monotonic() + 10
            while len(procs.descendants(service.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            children = procs.descendants(service.pid)
            self.assertEqual(len(children), 2)
            service.stop(grace=2)
            time.sleep(0.1)
            self.assertFalse(any(os.path.exists(f"/proc/{pid}") and _not_zombie(pid) for pid in children))

    def test_wait_ready_waits_for_every_ready_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            port = redisctl.free_port()
            argv = [sys.executable, "-c", SERVER, str(port), "3"]
            service = procs.Service("fake", argv, Path(tmp) / "fake.log")
            try:
                spec = servers.Spec("fake", "fake", argv, ready_line="READY", ready_count=3)
                self.assertIsNone(servers.wait_ready(service, spec, port, timeout=20, settle=0))
                self.assertEqual(service.log_text().count("READY"), 3)
            finally:
                service.stop(grace=2)

    def test_wait_ready_says_why_a_server_did_not_start(self):
        with tempfile.TemporaryDirectory() as tmp:
            argv = [sys.executable, "-c", "print('no such thing'); raise SystemExit(4)"]
            service = procs.Service("broken", argv, Path(tmp) / "broken.log")
            try:
                why = servers.wait_ready(service, servers.Spec("broken", "broken", argv), redisctl.free_port(),
                                         timeout=10)
            finally:
                service.stop(grace=2)
            self.assertIn("exited with status 4", why)
            self.assertIn("no such thing", why)


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


class LoadgenTest(unittest.TestCase):
    """loadgen with `binary` (a stand-in printing a recorded output), `env` and `while_running`."""

    def stand_in(self, folder: Path, fixture: str) -> Path:
        script = folder / "tool"
        script.write_text(f"#!/bin/sh\n[ \"$RUN16_TEST\" = yes ] || exit 9\ncat '{FIXTURES / fixture}'\n")
        script.chmod(0o755)
        return script

    def test_wrk_with_binary_env_and_while_running(self):
        with tempfile.TemporaryDirectory() as tmp:
            tool, raw = self.stand_in(Path(tmp), "wrk-tokio-hyper.txt"), Path(tmp) / "wrk.txt"
            calls = []
            out = loadgen.wrk("http://127.0.0.1:1/", 2, 50, 3, raw, None, binary=str(tool),
                              env=dict(os.environ, RUN16_TEST="yes"), while_running=calls.append)
            self.assertIsNone(out["error"])
            self.assertEqual(out["rps"], 76840.26)
            self.assertEqual(len(calls), 1)
            self.assertTrue(out["argv"].startswith(f"{tool} -t 2 -c 50 -d 3s --latency"))
            text = raw.read_text()
            self.assertTrue(text.startswith(f"$ {tool} -t 2 -c 50 -d 3s --latency http://127.0.0.1:1/\n"))
            self.assertIn("Requests/sec:  76840.26", text)

    def test_ab_pinned_with_env(self):
        with tempfile.TemporaryDirectory() as tmp:
            tool, raw = self.stand_in(Path(tmp), "ab-tokio-hyper.txt"), Path(tmp) / "ab.txt"
            cpus = machine.cpu_list(os.sched_getaffinity(0))
            out = loadgen.ab("http://127.0.0.1:1/", 5000, 500, 20, False, raw, None, cpus, binary=str(tool),
                             env=dict(os.environ, RUN16_TEST="yes"))
            self.assertIsNone(out["error"])
            self.assertEqual((out["complete"], out["ok_2xx"], out["rps"]), (5000, 5000, 20783.89))
            self.assertTrue(raw.read_text().startswith(f"$ taskset -c {cpus} {tool} -c 500 -t 20 -n 5000 -r -l "))

    def test_without_env_the_tool_fails_and_says_so(self):
        with tempfile.TemporaryDirectory() as tmp:
            tool = self.stand_in(Path(tmp), "wrk-tokio-hyper.txt")
            out = loadgen.wrk("http://127.0.0.1:1/", 1, 1, 1, Path(tmp) / "wrk.txt", None, binary=str(tool),
                              env={k: v for k, v in os.environ.items() if k != "RUN16_TEST"})
            self.assertIn("wrk gave no result", out["error"])


class MachineTest(unittest.TestCase):
    def test_read(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "status"
            path.write_text("Name:\tx\nVmRSS:\t  1234 kB\n")
            self.assertEqual(procs.read(str(path), r"^VmRSS:\s+(\d+)"), "1234")
            self.assertIsNone(procs.read(str(path), r"^Pss:\s+(\d+)"))  # not there
            self.assertEqual(procs.read(str(path)), "Name:\tx\nVmRSS:\t  1234 kB")
            self.assertIsNone(procs.read(str(Path(tmp) / "gone")))
        self.assertEqual(procs.memory_kib(2 ** 22 + 12345, with_pss=True), (0, 0))  # above pid_max: never a process

    def test_sysctl(self):
        self.assertRegex(machine.sysctl("kernel.pid_max"), r"^\d+$")
        self.assertRegex(machine.sysctl("net.ipv4.ip_local_port_range"), r"^\d+ \d+$")  # tab -> space
        self.assertIsNone(machine.sysctl("no.such.setting"))

    def test_open_files_limit_is_lifted_to_the_hard_one(self):
        soft, hard = machine.raise_open_files_limit()
        self.assertEqual((soft, hard), resource.getrlimit(resource.RLIMIT_NOFILE))
        self.assertEqual(soft, 65536 if hard == resource.RLIM_INFINITY else hard)

    def test_describe(self):
        m = machine.describe()
        for key in ("hostname", "kernel", "arch", "cpus_online", "cpus_allowed", "cpu_model", "memory_gib",
                    "os", "glibc", "python", "governor", "loadavg"):
            self.assertIn(key, m)
        self.assertTrue(m["glibc"].startswith("glibc "))
        self.assertEqual(len(m["loadavg"].split()), 5)

    def test_cpu_list(self):
        self.assertEqual(machine.cpu_list([5, 0, 1, 2, 8, 9]), "0-2,5,8-9")
        self.assertEqual(machine.cpu_list([3]), "3")
        seed = random.randrange(2 ** 32)
        rng = random.Random(seed)
        for _ in range(500):  # any set of CPUs round-trips through taskset's list syntax
            cpus = set(rng.sample(range(64), rng.randint(1, 64)))
            back = set()
            for part in machine.cpu_list(cpus).split(","):
                lo, _, hi = part.partition("-")
                back.update(range(int(lo), int(hi or lo) + 1))
            self.assertEqual(back, cpus, f"seed {seed}")


# /proc/stat of the 2-CPU VM, two readings 1 s apart (cpu, cpu0, cpu1 and a line that is not a CPU).
STAT_0 = """cpu  10 0 10 180 0 0 0 0 0 0
cpu0 5 0 5 90 0 0 0 0 0 0
cpu1 5 0 5 90 0 0 0 0 0 0
intr 12345 0 0
"""
STAT_1 = """cpu  140 0 40 220 0 0 0 0 0 0
cpu0 105 0 5 90 0 0 0 0 0 0
cpu1 35 0 35 120 10 0 0 0 0 0
intr 12400 0 0
"""


class ProcReadersTest(unittest.TestCase):
    def test_cpu_busy_share_leaves_idle_and_iowait_out(self):
        # cpu (every CPU): 200 ticks passed, 30 idle and 10 iowait of them, so 160 busy.
        self.assertEqual(machine.busy_percent(machine.cpu_times(STAT_0), machine.cpu_times(STAT_1)), 80.0)
        self.assertIsNone(machine.busy_percent(machine.cpu_times(STAT_0), machine.cpu_times(STAT_0)))

    def test_schedstat(self):
        self.assertEqual(measure.parse_schedstat("123456789 987654 321\n"), (123456789, 987654))

    def test_this_process_threads_are_read(self):
        self.assertIn(os.getpid(), measure.tasks_of([os.getpid(), 2 ** 22 + 7]))  # the second PID does not exist
        self.assertGreaterEqual(measure.run_delay([os.getpid(), 2 ** 22 + 7]), 0.0)
        self.assertGreater(measure.machine_cpu_seconds(), 0.0)
        switches = measure.switches_of([os.getpid()])[os.getpid()]
        self.assertTrue(switches[0] > 0 and switches[1] >= 0, switches)

if __name__ == "__main__":
    unittest.main()
