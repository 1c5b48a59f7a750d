"""The servers under test: how each is started, what it needs, and how to tell it is ready; the
kit's nginx config and the @https certificate. Each listens on 127.0.0.1:<port> and, but nginx,
counts in the run's one Redis (its URL in REDIS_URL, so the password stays out of `ps`). bench/run's
rows, in run order, are ALL_IDS (bench/README.md, *The rows*).
"""
from __future__ import annotations

import http.client
import os
import resource
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs, provision

GUNICORN_WORKERS = 4
# gunicorn's default --worker-connections, given explicitly, and the redis-py pool size to match
# (redis-py 8 would otherwise cap the pool at 100: see bench/gunicorn/app.py).
WORKER_CONNECTIONS = 1000
NGINX_BODY = "123456"  # a fixed body the size of a six-digit counter value

ALL_IDS = ["gunicorn-sync", "gunicorn-gevent", "gunicorn-eventlet", "gunicorn-tornado",
           "tokio-hyper", "nginx", "hitcore-4", "hitcore-ncpu", "hitcore-1", "hitcore-scaling"]


@dataclass
class Context:
    """What every server's command line is built from."""
    port: int
    redis_url: str
    ncpu: int                      # CPUs the servers may use
    server_cpus: str | None        # a taskset list, or None for no pinning
    hitcore: Path | None           # the hitcore binary
    tmp: Path                      # run-time scratch (nginx config)

    @property
    def bind(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Spec:
    id: str
    title: str
    argv: list[str]
    env: dict = field(default_factory=dict)
    uses_redis: bool = True
    processes: int = 1            # the process count that means "all workers are up"
    needs: str = ""               # which provisioning step it depends on: venv, eventlet, tokio, hitcore
    ready_line: str = ""          # a log line each worker prints once it can serve ("Connected to Redis")
    ready_count: int = 0          # how many of them mean "every worker is ready"
    https: bool = False           # it answers over TLS (bench/compare's @https)


def selected(only: list[str] | None) -> list[str]:
    """The row ids an --only list picks, in run order; raises ValueError on an unknown name."""
    if not only:
        return list(ALL_IDS)
    picked = []
    for name in only:
        matches = [i for i in ALL_IDS if name == i or name in i.split("-")]
        if not matches:
            raise ValueError(f"--only: no server called '{name}' (known: {', '.join(ALL_IDS)})")
        picked += matches
    return [i for i in ALL_IDS if i in picked]


def _pin(ctx: Context, argv: list[str]) -> list[str]:
    return (["taskset", "-c", ctx.server_cpus] + argv) if ctx.server_cpus else argv


def gunicorn(ctx: Context, worker_class: str) -> Spec:
    venv = "eventlet" if worker_class == "eventlet" else "main"
    folder = provision.VENVS[venv][0]
    argv = [str(folder / "bin" / "gunicorn"), "-w", str(GUNICORN_WORKERS), "-k", worker_class,
            "-b", ctx.bind, "--chdir", str(provision.BENCH / "gunicorn"),
            "--worker-connections", str(WORKER_CONNECTIONS), "--graceful-timeout", "5",
            "--error-logfile", "-", "app:app"]
    title = f"gunicorn -w {GUNICORN_WORKERS} {worker_class}"
    if worker_class == "eventlet":
        title += " (gunicorn 25.3.0)"
    return Spec(f"gunicorn-{worker_class}", title, _pin(ctx, argv),
                env={"REDIS_URL": ctx.redis_url, "REDIS_MAX_CONNECTIONS": str(WORKER_CONNECTIONS),
                     "PYTHONWARNINGS": "ignore::DeprecationWarning"},
                processes=1 + GUNICORN_WORKERS, needs="eventlet" if venv == "eventlet" else "venv")


def tokio(ctx: Context) -> Spec:
    argv = [str(provision.TOKIO_BINARY), "-b", ctx.bind, "-t", str(ctx.ncpu)]
    return Spec("tokio-hyper", f"tokio + hyper + redis-rs, {ctx.ncpu} threads", _pin(ctx, argv),
                env={"REDIS_URL": ctx.redis_url}, needs="tokio")


NGINX_TEMPLATE = provision.BENCH / "peers" / "nginx" / "nginx.conf.in"
# The limits bench/run has always given nginx: enough for wrk -c 500 and ab -c 500 many times over.
NGINX_DEFAULT_LIMITS = {"worker_connections": 4096, "rlimit_nofile": 16384, "backlog": 2048}


def nginx_limits(connections: int | None, nofile_hard: int | None = None) -> dict:
    """nginx's worker_connections, worker_rlimit_nofile and listen backlog for a load of
    `connections` clients, set as an operator expecting that many would set them.

    nginx does not spread accepts evenly over its workers (whichever worker epoll wakes first takes
    the whole queue), so one worker may end up holding most connections: each worker gets room for
    all of them plus 1,024 (the listener, a probe, clients arriving as others leave), rounded up to
    a multiple of 1,024. The descriptor limit is twice that, as nginx's docs advise, but never above
    `nofile_hard` (an unprivileged master cannot raise it past its hard limit: nginx would log an
    alert and keep the inherited one), and never below worker_connections. The backlog asks for
    one slot per client (the kernel caps it at net.core.somaxconn), at least the default 2,048.
    None: bench/run's long-standing defaults."""
    if connections is None:
        return dict(NGINX_DEFAULT_LIMITS)
    if connections < 1:
        raise ValueError(f"nginx_limits: connections must be ≥ 1, not {connections}")
    per_worker = max(NGINX_DEFAULT_LIMITS["worker_connections"], -(-(connections + 1024) // 1024) * 1024)
    rlimit = max(NGINX_DEFAULT_LIMITS["rlimit_nofile"], 2 * per_worker)
    if nofile_hard:
        rlimit = max(per_worker, min(rlimit, nofile_hard))
    backlog = min(65535, max(NGINX_DEFAULT_LIMITS["backlog"], connections))
    return {"worker_connections": per_worker, "rlimit_nofile": rlimit, "backlog": backlog}


def nginx_config(template: str, *, workers: int, prefix: Path | str, bind: str, limits: dict,
                 body: str = NGINX_BODY, tls: tuple[Path | str, Path | str] | None = None) -> str:
    """The kit's static nginx config (peers/nginx/nginx.conf.in) filled in; `tls`: (certificate,
    key) to serve HTTPS with, TLS 1.2 and 1.3 and a session cache, as an operator would."""
    listen_tls, tls_lines = "", ""
    if tls:
        listen_tls = " ssl"
        tls_lines = (f"        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};\n"
                     "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache shared:SSL:10m;\n")
    return template.format(workers=workers, prefix=prefix, bind=bind, body=body, listen_tls=listen_tls,
                           tls_lines=tls_lines, **limits)


def write_nginx_conf(folder: Path, bind: str, workers: int, connections: int | None = None,
                     tls: tuple[str, str] | None = None) -> tuple[Path, dict]:
    """The kit's static nginx config written as folder/nginx.conf, `folder` its prefix, one worker
    per CPU given, limits for `connections` clients (nginx_limits, under the open-files hard limit),
    serving HTTPS with `tls` (certificate, key) when given."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = nginx_limits(connections, None if hard == resource.RLIM_INFINITY else hard)
    path = folder / "nginx.conf"
    path.write_text(nginx_config(NGINX_TEMPLATE.read_text(), workers=workers, prefix=folder, bind=bind, limits=limits,
                                 tls=tls))
    return path, limits


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for IP 127.0.0.1 and its key (PEM), made with openssl:
    what bench/compare's @https variants serve ({tls_cert}, {tls_key}; no client verifies it)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "server.crt", folder / "server.key"
    result = procs.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE",
                        "-addext", "extendedKeyUsage=serverAuth"], timeout=30)
    if not result.ok:
        raise procs.RunError(f"openssl failed: {result.tail(3)}")
    return cert, key


def nginx(ctx: Context) -> Spec:
    """nginx `return 200` with one worker per CPU and bench/run's long-standing limits."""
    folder = ctx.tmp / "nginx"
    conf, _limits = write_nginx_conf(folder, ctx.bind, ctx.ncpu)
    argv = ["nginx", "-p", f"{folder}/", "-c", str(conf), "-e", "stderr"]
    return Spec("nginx", f"nginx return 200 (static, no Redis), {ctx.ncpu} workers", _pin(ctx, argv),
                uses_redis=False, processes=1 + ctx.ncpu)


def hitcore(ctx: Context, shards: int | None, row_id: str | None = None) -> Spec:
    argv = [str(ctx.hitcore or provision.HITCORE_BINARY), "-b", ctx.bind]
    if shards is None:
        title = f"hitcore, one shard per CPU ({ctx.ncpu})"
        count = ctx.ncpu
    else:
        argv += ["-w", str(shards)]
        title = f"hitcore -w {shards}"
        if shards > ctx.ncpu:
            argv.append("--share-cpus")
            title += " --share-cpus"
        count = shards
    return Spec(row_id or ("hitcore-ncpu" if shards is None else f"hitcore-{shards}"), title,
                _pin(ctx, argv), env={"REDIS_URL": ctx.redis_url}, processes=1 + count, needs="hitcore")


def spec_for(row_id: str, ctx: Context) -> Spec:
    """A bench/run row's server (not hitcore-scaling's, which is one per shard count)."""
    kind, _, variant = row_id.partition("-")
    if kind == "gunicorn":
        return gunicorn(ctx, variant)
    if kind == "hitcore":
        return hitcore(ctx, None if variant == "ncpu" else int(variant))
    return {"tokio-hyper": tokio, "nginx": nginx}[row_id](ctx)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_in_use(port):
            return True
        time.sleep(0.1)
    return False


def probe(port: int, timeout: float = 2.0, https: bool = False) -> int | None:
    """GET / once (over TLS, any certificate, with `https`); the status code, or None when nothing answers."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ssl._create_unverified_context())
            if https else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_ready(service: procs.Service, spec: Spec, port: int, timeout: float = 30.0,
               settle: float = 0.5) -> str | None:
    """Waits until the server answers GET / with 200, all its processes are up and, with
    `spec.ready_line`, its log holds that line `spec.ready_count` times; then `settle` seconds more.

    Returns None when ready, else why not (the server exited, or answered something else). Processes
    or ready lines still missing at the deadline are not an error (it says so on the console): the
    listener answers, and the load shows what the late workers cost."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        if not service.alive():
            return f"exited with status {service.proc.returncode}: {_log_tail(service)}"
        status = probe(port, https=spec.https)
        if status == 200:
            break
        time.sleep(0.2)
    else:
        return f"no 200 answer to GET / within {timeout:.0f}s (last: {status}): {_log_tail(service)}"
    # The listener answers as soon as one worker is up; give the others until the deadline.
    while time.monotonic() < deadline:
        if 1 + len(procs.descendants(service.pid)) >= spec.processes and (
                not spec.ready_line or service.log_text().count(spec.ready_line) >= spec.ready_count):
            break
        time.sleep(0.1)
    else:
        said = f" (or said {spec.ready_line!r})" if spec.ready_line else ""
        procs.log(f"{spec.id}: not every worker was up{said} within {timeout:.0f}s; going on")
    time.sleep(settle)  # let late workers finish booting before the load starts
    if not service.alive():
        return f"exited with status {service.proc.returncode}: {_log_tail(service)}"
    return None


def start(spec: Spec, port: int, log_path: Path, name: str | None = None, argv: list[str] | None = None,
          timeout: float = 30.0, settle: float = 0.5, cwd: Path | None = None) -> procs.Service:
    """Starts `spec` (or `argv` with its environment) on `port` once the port is free, and waits
    until it is ready (wait_ready); procs.RunError, the server stopped, when it is not."""
    if port_in_use(port) and not wait_port_free(port):
        raise procs.RunError(f"port {port} is still busy")
    service = procs.Service(name or spec.id, argv or spec.argv, log_path, env={**os.environ, **spec.env}, cwd=cwd)
    problem = wait_ready(service, spec, port, timeout, settle)
    if problem:
        service.stop()
        raise procs.RunError(f"{spec.id} did not start: {problem}")
    return service


def _log_tail(service: procs.Service, lines: int = 3) -> str:
    text = [l for l in service.log_text().strip().splitlines() if l.strip()]
    return " | ".join(text[-lines:]) or "(no output)"


def worker_timeouts(log_text: str) -> int:
    """gunicorn's (and hitcore's) `[CRITICAL] WORKER TIMEOUT (pid:N)` lines."""
    return sum(1 for line in log_text.splitlines() if "WORKER TIMEOUT" in line)
