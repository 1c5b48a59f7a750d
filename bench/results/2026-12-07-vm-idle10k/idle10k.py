"""Instructions per second of a hitcore shard holding N idle keep-alive connections, under callgrind.
usage: idle10k.py BINARY N SECONDS OUTDIR"""
import os, socket, subprocess, sys, time, glob, resource, signal

binary, n, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
os.makedirs(out, exist_ok=True)
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

rport, hport = free_port(), free_port()
redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
                         stdout=subprocess.DEVNULL)
srv = None
try:
    time.sleep(0.5)
    srv = subprocess.Popen(["valgrind", "--tool=callgrind", "--trace-children=yes", "--dump-instr=no",
                            f"--callgrind-out-file={out}/callgrind.out.%p", binary, "-w", "1",
                            "-b", f"127.0.0.1:{hport}", "--redis", f"redis://127.0.0.1:{rport}",
                            "--worker-connections", str(n + 100), "--keep-alive", "600",
                            "--header-timeout", "600"], stdout=open(f"{out}/server.log", "w"),
                           stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", hport), timeout=1).close(); break
        except OSError:
            if time.time() > deadline: raise SystemExit("server did not start")
            time.sleep(0.5)
    conns, ok = [], 0
    req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", hport), timeout=60)
        s.sendall(req); conns.append(s)
    for s in conns:
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        ok += data.startswith(b"HTTP/1.1 200")
    time.sleep(2)
    pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.split()]
    shard_pids = []
    for p in pids:
        shard_pids += [int(x) for x in subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()]
    allp = [srv.pid] + pids + shard_pids
    for p in allp:
        subprocess.run(["callgrind_control", "-z", str(p)], capture_output=True)
    t0 = time.time(); time.sleep(seconds)
    for p in allp:
        subprocess.run(["callgrind_control", "-d", str(p)], capture_output=True)
    window = time.time() - t0
    totals = {}
    for f in glob.glob(f"{out}/callgrind.out.*.*"):
        pid = f.split(".")[-2]
        for line in open(f):
            if line.startswith("summary:"):
                totals[pid] = totals.get(pid, 0) + int(line.split()[1])
    print(f"{binary}: {ok}/{n} answered; idle window {window:.1f}s; instructions per second by pid: "
          + ", ".join(f"{p} {v / window:,.0f}" for p, v in sorted(totals.items())))
    for s in conns: s.close()
finally:
    if srv: srv.send_signal(signal.SIGTERM)
    try:
        if srv: srv.wait(30)
    except subprocess.TimeoutExpired:
        srv.kill()
    redis.terminate(); redis.wait()
