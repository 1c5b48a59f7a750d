#!/usr/bin/env python3
"""The slowloris client for bench/compare's `@attack=slowloris:N` (what it does: bench/README.md,
"Hostile clients"), one process, stdlib only, Linux epoll, 127.0.0.1 only:

    python3 bench/kit/slowloris.py --port P --conns 5000 --max-seconds 120

It prints a JSON line of counters every 0.5 s (`"t"` is time.monotonic(), system-wide on Linux, so
the parent lines them up with its own clock) and a last one with `"final": true`; it stops on
SIGTERM or SIGINT, at --max-seconds, and when its parent dies (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import errno
import json
import resource
import select
import signal
import socket
import sys
import time

PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\n"
DRIP = b"X-a: b\r\n"  # sent one byte at a time: a new header line every 8 seconds
SLOTS = 20            # the drip interval is cut into this many slices, one group of connections each
STATS_EVERY = 0.5
BATCH = 1000          # connects started per loop turn

_stopping = False


def _on_signal(_signum, _frame):
    global _stopping
    _stopping = True


def _setup() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with contextlib.suppress(OSError, AttributeError):  # die with the parent, even if it is SIGKILLed
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class Conn:
    __slots__ = ("sock", "connecting", "group", "pos")

    def __init__(self, sock, group):
        self.sock, self.connecting, self.group, self.pos = sock, True, group, 0


class Pool:
    """Connections on one epoll and their counters. Connections are kept opening: `pending` groups
    start, at most BATCH a loop turn; a failed connect is retried 50 ms later; one the server closed
    reopens at once (`again`)."""

    def __init__(self, port: int, groups):
        self.port = port
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.c = collections.Counter(open=0, connecting=0, opened=0, closed_by_server=0, connect_failed=0)
        self.pending, self.retry = collections.deque(groups), collections.deque()  # retry: (when, group)

    def _failed(self, group) -> None:
        self.c["connect_failed"] += 1
        self.retry.append((time.monotonic() + 0.05, group))

    def start_pending(self) -> None:
        now = time.monotonic()
        while self.retry and self.retry[0][0] <= now:
            self.pending.append(self.retry.popleft()[1])
        for _ in range(min(len(self.pending), BATCH)):
            group = self.pending.popleft()
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError:  # EMFILE, ENFILE
                self._failed(group)
                continue
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", self.port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                self._failed(group)
                continue
            self.conns[s.fileno()] = Conn(s, group)
            self.ep.register(s.fileno(), select.EPOLLOUT)
            self.c["connecting"] += 1

    def connected(self, conn: Conn) -> bool:
        """After EPOLLOUT on a connecting socket: True if the connect succeeded (else it is closed)."""
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.c["connecting"] -= 1
        if err:
            self._drop(conn)
            self._failed(conn.group)
            return False
        conn.connecting = False
        self.c["open"] += 1
        self.c["opened"] += 1
        return True

    def again(self, conn: Conn) -> None:
        """The server closed `conn`: count it and open another in its place."""
        self.c["open"] -= 1
        self.c["closed_by_server"] += 1
        self._drop(conn)
        self.pending.append(conn.group)

    def _drop(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)
        conn.sock.close()

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.ep.close()

    def emit(self, **extra) -> None:
        print(json.dumps(dict(self.c, t=round(time.monotonic(), 3), **extra)), flush=True)


def _send(conn: Conn, data: bytes) -> int | None:
    """Sends what the socket takes; None when the connection is gone."""
    try:
        return conn.sock.send(data)
    except BlockingIOError:
        return 0
    except OSError:
        return None


def _closed(conn: Conn) -> bool:
    """Reads what the server sent (an error answer, at most); whether it closed the connection."""
    try:
        return not conn.sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True


def slowloris(port: int, conns: int, interval: float, max_seconds: float) -> None:
    pool = Pool(port, (i % SLOTS for i in range(conns)))
    groups: list[set] = [set() for _ in range(SLOTS)]
    tick_every = interval / SLOTS
    began = time.monotonic()
    deadline, next_tick, tick, next_stats = began + max_seconds, began + tick_every, 0, began
    while not _stopping and time.monotonic() < deadline:
        pool.start_pending()
        timeout = 0 if pool.pending else max(0.0, min(next_tick, next_stats) - time.monotonic())
        for fd, _events in pool.ep.poll(timeout, 4096):
            conn = pool.conns.get(fd)
            if conn is None:
                continue
            if conn.connecting:
                if not pool.connected(conn):
                    continue
                if _send(conn, PARTIAL) is None:
                    pool.again(conn)
                else:
                    pool.ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                    groups[conn.group].add(conn)
                continue
            if _closed(conn):
                groups[conn.group].discard(conn)
                pool.again(conn)
        now = time.monotonic()
        if now >= next_tick:
            group = groups[tick % SLOTS]
            for conn in list(group):
                sent = _send(conn, DRIP[conn.pos % len(DRIP): conn.pos % len(DRIP) + 1])
                if sent is None:
                    group.discard(conn)
                    pool.again(conn)
                elif sent:
                    conn.pos += 1
            tick += 1
            next_tick += tick_every
            if now - next_tick > interval:  # far behind: do not try to catch up in a burst
                next_tick = now + tick_every
        if now >= next_stats:
            pool.emit()
            next_stats = now + STATS_EVERY
    pool.emit(final=True)
    pool.close_all()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="the slowloris client of bench/compare's @attack (127.0.0.1 only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two bytes of a connection")
    p.add_argument("--max-seconds", type=float, default=120.0, help="hard bound on the whole process")
    args = p.parse_args(argv)
    _setup()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # bench/compare raised it to the hard limit
    if args.conns > limit - 64:
        print(f"slowloris: --conns {args.conns} does not fit the open-files limit {limit}: "
              f"using {limit - 64}", file=sys.stderr, flush=True)
        args.conns = limit - 64
    slowloris(args.port, args.conns, args.interval, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
