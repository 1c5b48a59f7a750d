"""Ad-hoc diagnosis for issue 14 target 5 (not committed as a tool): what holding 5,000 slowloris
connections costs each server per second, with no other load: CPU (user/system), context switches,
syscalls, over 5 s of perf stat once every attacker has connected."""
import json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "/work/wt/targets/bench")
from kit import machine, procs, redisctl, servers, compare
machine.raise_open_files_limit()
HZ = os.sysconf("SC_CLK_TCK")
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
EVENTS = "task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_accept4,syscalls:sys_enter_close"
def ut_st(pids):
    u = s = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text(); f = f[f.rfind(")")+2:].split(); u += int(f[11]); s += int(f[12])
        except OSError: pass
    return u / HZ, s / HZ
redis = redisctl.RedisServer(out); redis.wait_ready()
rows = []
try:
    for name, flags in (("hitcore-wc10000", ["--worker-connections", "10000"]),
                        ("hitcore-wc10000-ht60", ["--worker-connections", "10000", "--header-timeout", "60"]),
                        ("nginx", None)):
        port = redisctl.free_port(); tmp = Path(tempfile.mkdtemp(prefix="diag2-"))
        if flags is not None:
            argv = ["/work/wt/targets/target/release/hitcore", "-b", f"127.0.0.1:{port}"] + flags
            spec = servers.Spec(name, name, argv, processes=3, ready_line="Connected to Redis", ready_count=2); env = dict(os.environ, REDIS_URL=redis.url)
        else:
            conf = compare.write_nginx_conf(tmp, f"127.0.0.1:{port}", 2, 5100)
            argv = ["nginx", "-p", f"{tmp}/", "-c", str(conf), "-e", "stderr"]; spec = servers.Spec(name, name, argv, processes=3); env = None
        svc = procs.Service(name, argv, out / f"{name}.log", env=env)
        assert not servers.wait_ready(svc, spec, port)
        pids = [svc.pid] + procs.descendants(svc.pid)
        att = procs.Service(f"{name}-att", [sys.executable, "/work/wt/targets/bench/kit/attackers.py", "slowloris", "--port", str(port), "--conns", "5000", "--max-seconds", "40"], out / f"{name}-att.log")
        time.sleep(4)
        perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", EVENTS, "-e", "syscalls:sys_exit_recvfrom", "--filter", "ret < 0", "-p", ",".join(map(str, pids)), "-o", str(out / f"{name}.perf.csv")])
        time.sleep(0.3)
        u0, s0 = ut_st(pids); a0 = procs.cpu_seconds([att.pid]); t0 = time.monotonic()
        time.sleep(5)
        u1, s1 = ut_st(pids); a1 = procs.cpu_seconds([att.pid]); t1 = time.monotonic()
        perf.send_signal(signal.SIGINT); perf.wait(timeout=20)
        last = [l for l in att.log_text().splitlines() if l.startswith("{")][-1]
        att.stop(grace=5); svc.stop(grace=10)
        counts = {}
        for line in (out / f"{name}.perf.csv").read_text().splitlines():
            cols = line.split(",")
            if len(cols) > 3 and cols[0].replace(".", "").isdigit():
                counts[cols[2] + (":err" if cols[2] in counts else "")] = float(cols[0])
        secs = t1 - t0
        row = {"server": name, "server_user_pct": round(100 * (u1 - u0) / secs, 1), "server_sys_pct": round(100 * (s1 - s0) / secs, 1),
               "attacker_cpu_pct": round(100 * (a1 - a0) / secs, 1), "per_s": {k: round(v / 5.3) for k, v in counts.items()}, "attacker_last": json.loads(last)}
        rows.append(row); print(json.dumps(row), flush=True)
        time.sleep(1)
finally:
    redis.stop(); procs.cleanup()
(out / "diag2.json").write_text(json.dumps(rows, indent=1))
