"""What a bench/compare plan's variants need beside them, started once for the whole run: the Redis
setups the plan names (kit/compare_plan.py's SETUPS) and the certificates for TLS.

- "primary": one password-protected redis-server with a plain port and, when a variant names
  {redis_tls_url} or {tls_ca}, a TLS port with a private CA and a server certificate for IP
  127.0.0.1 made by openssl in the run's temporary folder;
- "replicated": a second primary with a replica attached (`--replicaof`), for `--wait-replicas`,
  and with {sentinel_url}, three sentinels monitoring it.
`make_certificates()` also makes the certificate an @https variant serves. Every process here is a
procs.Service or a redisctl.RedisServer, stopped by PID; it must not start servers under test or
load generators (kit/compare.py does).
"""
from __future__ import annotations

import time
from pathlib import Path

from . import procs, redisctl


def make_certificates(folder: Path) -> dict[str, Path]:
    """A private CA and a server certificate for IP 127.0.0.1 (PEM), made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"{k}" for k in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr", "ext.cnf")}
    paths["ext.cnf"].write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(paths["ca.key"]), "-out", str(paths["ca.crt"]), "-days", "2", "-subj", "/CN=bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(paths["server.key"]), "-out", str(paths["server.csr"]), "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", str(paths["server.csr"]), "-CA", str(paths["ca.crt"]),
         "-CAkey", str(paths["ca.key"]), "-CAcreateserial", "-out", str(paths["server.crt"]), "-days", "2",
         "-extfile", str(paths["ext.cnf"])],
    ]
    for argv in steps:
        result = procs.run(argv, timeout=30)
        if not result.ok:
            raise RuntimeError(f"openssl failed: {result.tail(3)}")
    return paths


class RedisSetups:
    """The Redis processes a plan needs, started once for the whole run."""

    SERVICE = "hitcore-bench"

    def __init__(self, needs: set[str], tls: bool, sentinels: bool, log_dir: Path, tmp: Path):
        self.values: dict[str, str] = {}
        self.by_setup: dict[str, redisctl.RedisServer] = {}
        self.replica: redisctl.RedisServer | None = None
        self.sentinels: list[procs.Service] = []
        self.sentinel_ports: list[int] = []
        self.tls_port = None
        if "primary" in needs:
            extra = []
            if tls:
                certs = make_certificates(tmp / "certs")
                self.tls_port = redisctl.free_port()
                extra = ["--tls-port", str(self.tls_port), "--tls-cert-file", str(certs["server.crt"]),
                         "--tls-key-file", str(certs["server.key"]), "--tls-ca-cert-file", str(certs["ca.crt"]),
                         "--tls-auth-clients", "no"]
                self.values["tls_ca"] = str(certs["ca.crt"])
            primary = redisctl.RedisServer(log_dir, extra_args=extra, log_name="redis-primary.log", workdir=tmp)
            primary.wait_ready()
            self.by_setup["primary"] = primary
            self.values["redis_url"] = primary.url
            if tls:
                self.values["redis_tls_url"] = f"rediss://:{primary.password}@127.0.0.1:{self.tls_port}/0"
        if "replicated" in needs:
            (tmp / "replica").mkdir(exist_ok=True)
            primary = redisctl.RedisServer(log_dir, log_name="redis-replicated-primary.log", workdir=tmp)
            primary.wait_ready()
            # A replica writes the full sync it receives to dump.rdb in its --dir: keep that in tmp.
            replica = redisctl.RedisServer(
                log_dir, password=primary.password, log_name="redis-replica.log", workdir=tmp / "replica",
                extra_args=["--replicaof", "127.0.0.1", str(primary.port), "--masterauth", primary.password])
            replica.wait_ready()
            self._wait_replica_online(primary)
            self.by_setup["replicated"] = primary
            self.replica = replica
            self.values["replicated_url"] = primary.url
            if sentinels:
                self._start_sentinels(primary, log_dir, tmp)

    def _start_sentinels(self, primary: redisctl.RedisServer, log_dir: Path, tmp: Path, count: int = 3) -> None:
        """Three sentinels (quorum 2) monitoring the replicated primary, as a small production setup
        has; each rewrites its own config file, so each gets a folder. No failover happens in a run."""
        for n in range(count):
            port = redisctl.free_port()
            folder = tmp / f"sentinel-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                            f"sentinel monitor {self.SERVICE} 127.0.0.1 {primary.port} 2\n"
                            f"sentinel down-after-milliseconds {self.SERVICE} 5000\n"
                            f"sentinel auth-pass {self.SERVICE} {primary.password}\n")
            self.sentinels.append(procs.Service(f"sentinel-{n}", ["redis-server", str(conf), "--sentinel"],
                                                log_dir / f"redis-sentinel-{n}.log"))
            self.sentinel_ports.append(port)
        deadline = time.monotonic() + 20
        for port in self.sentinel_ports:
            while True:
                try:
                    with redisctl.RedisClient(port, None) as client:
                        addr = client.command("SENTINEL", "get-master-addr-by-name", self.SERVICE)
                    if addr and str(addr[1]) == str(primary.port):
                        break
                except (OSError, redisctl.RedisError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sentinel on port {port} did not name the primary within 20 s")
                time.sleep(0.2)
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        self.values["sentinel_url"] = f"redis+sentinel://:{primary.password}@{hosts}/{self.SERVICE}/0"

    @staticmethod
    def _wait_replica_online(primary: redisctl.RedisServer, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with primary.client() as client:
                info = client.command("INFO", "replication")
            if "connected_slaves:1" in info and "state=online" in info:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the replica did not come online within {timeout:.0f}s")

    def describe(self) -> list[str]:
        out = []
        if "primary" in self.by_setup:
            p = self.by_setup["primary"]
            out.append(f"primary: redis-server on 127.0.0.1:{p.port} (password, no persistence)"
                       + (f", TLS on port {self.tls_port} (private CA, certificate for IP 127.0.0.1, "
                          "TLS 1.2/1.3 as negotiated, no client certificates)" if self.tls_port else ""))
        if "replicated" in self.by_setup:
            p = self.by_setup["replicated"]
            out.append(f"replicated: a second redis-server on 127.0.0.1:{p.port} with one replica "
                       f"(127.0.0.1:{self.replica.port}, `--replicaof`), both without persistence")
        if self.sentinels:
            out.append(f"sentinels: {len(self.sentinels)} (ports {', '.join(map(str, self.sentinel_ports))}, quorum 2, "
                       f"down-after 5 s) monitoring the replicated primary as `{self.SERVICE}`; no failover in the run")
        return out

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop(grace=10)
        for server in ([self.replica] if self.replica else []) + list(self.by_setup.values()):
            server.stop()
