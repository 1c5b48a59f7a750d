"""Ad-hoc diagnosis for issue 14 target 4 (not committed): per request, CPU (user/system), context
switches and syscalls of hitcore and nginx at wrk -c 500 and -c 10000, perf stat over the whole wrk run."""
import json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "/work/wt/targets/bench")
from kit import machine, procs, redisctl, servers, parse, compare
machine.raise_open_files_limit()
HZ = os.sysconf("SC_CLK_TCK")
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
dur = int(sys.argv[2]) if len(sys.argv) > 2 else 8
EVENTS = "task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_accept4"
def ut_st(pids):
    u = s = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text(); f = f[f.rfind(")")+2:].split()
            u += int(f[11]); s += int(f[12])
        except OSError: pass
    return u / HZ, s / HZ
redis = redisctl.RedisServer(out); redis.wait_ready()
results = []
try:
  for conns in [int(c) for c in (sys.argv[3] if len(sys.argv) > 3 else "500,10000").split(",")]:
    for name in (sys.argv[4] if len(sys.argv) > 4 else "hitcore,nginx").split(","):
        port = redisctl.free_port()
        tmp = Path(tempfile.mkdtemp(prefix="diag-"))
        if name == "hitcore":
            argv = ["/work/wt/targets/target/release/hitcore", "-b", f"127.0.0.1:{port}", "--worker-connections", str(max(conns, 1000)), "--backlog", str(max(conns, 2048))]
            spec = servers.Spec(name, name, argv, processes=3, ready_line="Connected to Redis", ready_count=2)
            env = dict(os.environ, REDIS_URL=redis.url)
        else:
            conf = compare.write_nginx_conf(tmp, f"127.0.0.1:{port}", 2, conns)
            argv = ["nginx", "-p", f"{tmp}/", "-c", str(conf), "-e", "stderr"]
            spec = servers.Spec(name, name, argv, processes=3); env = None
        svc = procs.Service(f"{name}-{conns}", argv, out / f"{name}-{conns}.log", env=env)
        why = servers.wait_ready(svc, spec, port)
        assert not why, why
        pids = [svc.pid] + procs.descendants(svc.pid)
        c0 = redis.get_int("hit") or 0
        perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", EVENTS, "-e", "syscalls:sys_exit_recvfrom", "--filter", "ret < 0", "-p", ",".join(map(str, pids)), "-o", str(out / f"{name}-{conns}.perf.csv")])
        time.sleep(0.5)
        u0, s0 = ut_st(pids)
        r = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{dur}s", "--latency", f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
        u1, s1 = ut_st(pids)
        perf.send_signal(signal.SIGINT); perf.wait(timeout=20)
        (out / f"{name}-{conns}.wrk.txt").write_text(r.stdout + r.stderr)
        w = parse.parse_wrk(r.stdout)
        fds = [compare.fd_count(p) for p in pids]
        svc.stop(grace=10)
        n = w["requests"]
        counts = {}
        for line in (out / f"{name}-{conns}.perf.csv").read_text().splitlines():
            cols = line.split(",")
            if len(cols) > 3 and cols[0].replace(".", "").isdigit():
                counts[cols[2] + (":err" if cols[2] in counts else "")] = float(cols[0])
        row = {"server": name, "conns": conns, "requests": n, "rps": w["rps"], "p99_ms": w.get("p99_ms"),
               "user_us_per_req": round(1e6 * (u1 - u0) / n, 2), "sys_us_per_req": round(1e6 * (s1 - s0) / n, 2),
               "per_req": {k: round(v / n, 4) for k, v in counts.items()}, "fds": fds}
        results.append(row); print(json.dumps(row), flush=True)
        time.sleep(1)
finally:
    redis.stop(); procs.cleanup()
(out / "diag.json").write_text(json.dumps(results, indent=1))
