"""The run's one Redis (`RedisServer`: a free 127.0.0.1 port, a random password, no persistence, a
procs.Service stopped by PID), a minimal RESP client on a stdlib socket (no redis-cli, no
third-party package), and INFO commandstats read (`parse_commandstats`: hitcore's batching).
"""
from __future__ import annotations

import re
import secrets
import socket
import time
from pathlib import Path

from . import procs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisError(Exception):
    pass


def parse_commandstats(info: str, field: str = "calls") -> dict[str, int]:
    """INFO commandstats -> {command: calls}, commands in lower case ("incrby": 1234); or with `field`
    "usec" the microseconds Redis spent executing each (not reading, parsing and replying, which
    /proc's CPU time counts)."""
    return {name.lower(): int(n) for name, n in re.findall(rf"^cmdstat_([^:]+):.*?\b{field}=(\d+)", info, re.M)}


class RedisClient:
    """One connection, one command at a time; enough for SET/GET/INFO between tests."""

    def __init__(self, port: int, password: str | None, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        if password:
            self.command("AUTH", password)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def command(self, *args):
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self):
        line = self.reader.readline()
        if not line:
            raise RedisError("connection closed by Redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)[:-2]
            return data.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise RedisError(f"unexpected reply {line!r}")


class RedisServer:
    """redis-server on a free port with a password, stopped by `stop()`.

    `binary` and `env` run another redis-server than the one on PATH (bench/device/run16: the
    bundle's, with LD_LIBRARY_PATH to its libraries); `workdir` is its --dir (default: the cwd),
    where it would write files (it writes none: no persistence)."""

    def __init__(self, log_dir: Path, cpus: str | None = None, *, binary: str = "redis-server",
                 env: dict | None = None, workdir: Path | None = None):
        self.port = free_port()
        self.password = secrets.token_hex(12)
        argv = [
            binary, "--bind", "127.0.0.1", "--port", str(self.port),
            "--requirepass", self.password, "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--maxclients", "10000", "--loglevel", "notice",
        ]
        if workdir:
            argv += ["--dir", str(workdir)]
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        self.service = procs.Service("redis-server", argv, log_dir / "redis-server.log", env=env)

    @property
    def pid(self) -> int:
        """redis-server's own PID (for its CPU time); it runs under taskset only with `cpus`, which
        execs into it, so the PID is the same."""
        return self.service.pid

    @property
    def url(self) -> str:
        """The URL servers are given (through the environment, so the password stays out of ps)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if not self.service.alive():
                raise RedisError(f"redis-server exited: {self.service.log_text()[-500:]}")
            try:
                with self.client() as client:
                    if client.command("PING") == "PONG":
                        return
            except (OSError, RedisError) as error:
                last_error = error
            time.sleep(0.1)
        raise RedisError(f"redis-server did not answer PING within {timeout:.0f}s: {last_error}")

    def client(self) -> RedisClient:
        return RedisClient(self.port, self.password)

    def set(self, key: str, value) -> None:
        with self.client() as client:
            client.command("SET", key, value)

    def get_int(self, key: str) -> int | None:
        with self.client() as client:
            value = client.command("GET", key)
        return None if value is None else int(value)

    def command_calls(self) -> dict[str, int]:
        """Calls served so far, per command (INFO commandstats; see parse_commandstats)."""
        with self.client() as client:
            return parse_commandstats(client.command("INFO", "commandstats"))

    def version(self) -> str:
        with self.client() as client:
            info = client.command("INFO", "server")
        match = re.search(r"^redis_version:(\S+)", info, re.M)
        return match.group(1) if match else "unknown"

    def stop(self) -> None:
        self.service.stop(grace=10)
