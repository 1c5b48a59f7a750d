#!/usr/bin/env python3
"""Hostile clients for bench/compare's @attack (bench/hostile's plans), one mode per process
(stdlib only, Linux epoll).

    python3 bench/kit/attackers.py slowloris --port P --conns 5000 --max-seconds 120
    python3 bench/kit/attackers.py idle      --port P --conns 10000 --max-seconds 120
    python3 bench/kit/attackers.py flood     --port P --conns 8000 --max-seconds 60
    python3 bench/kit/attackers.py pipeline  --port P --seconds 10 --max-seconds 60

Modes (all against 127.0.0.1 only):
- slowloris: holds --conns connections, each sending a partial head (`GET / HTTP/1.1`, `Host: x`)
  and then one more header byte every --interval seconds (spread evenly over the interval). Each
  connection the server closes is reopened at once, so the pressure stays constant.
- idle: opens --conns keep-alive connections (at most --parallel connecting or waiting for their
  answer at a time), each sends one complete `GET /` and reads its answer, then stays idle. Once
  every connection is idle (or failed) it says `"ready": true`; it then holds them until stopped.
- flood: opens --conns connections as fast as it can: the even ones send one complete request and
  never read, the odd ones send nothing. Each one the server closes is reopened at once.
- pipeline: one connection writes pipelined `GET /` requests as fast as the socket takes them for
  --seconds, never reading; then holds the connection, still unread, until stopped.

Every mode prints one JSON line of counters every 0.5 s on stdout (`"t"` is time.monotonic(),
which is system-wide on Linux, so the parent can line the counters up with its own clock), and a
last one with `"final": true`. It stops on SIGTERM or SIGINT, at --max-seconds whatever happens,
and when its parent dies (PR_SET_PDEATHSIG), closing every socket it opened.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import errno
import fcntl
import json
import resource
import select
import signal
import socket
import sys
import termios
import time

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\n"
DRIP = b"X-a: b\r\n"  # sent one byte at a time: a new header line every 8 seconds
SLOTS = 20            # the drip interval is cut into this many slices, one group of connections each
STATS_EVERY = 0.5

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
EPOLLRDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
EPOLLERR, EPOLLHUP = select.EPOLLERR, select.EPOLLHUP

CONNECTING, OPEN, WAITING, IDLE = "connecting", "open", "waiting", "idle"

_stopping = False


def _on_signal(_signum, _frame):
    global _stopping
    _stopping = True


def _setup() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:  # die with the parent, even if it is SIGKILLed
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536 if hard == resource.RLIM_INFINITY else hard, hard))


def emit(counters: dict, **extra) -> None:
    print(json.dumps(dict(counters, t=round(time.monotonic(), 3), **extra)), flush=True)


def open_socket(port: int):
    """A non-blocking connect to 127.0.0.1:port: (socket, None) or (None, errno)."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as error:  # EMFILE, ENFILE
        return None, error.errno
    s.setblocking(False)
    err = s.connect_ex((HOST, port))
    if err not in (0, errno.EINPROGRESS):
        s.close()
        return None, err
    return s, None


class Conn:
    __slots__ = ("sock", "state", "group", "pos", "since", "buf", "kind")

    def __init__(self, sock, group, kind=""):
        self.sock, self.state, self.group, self.pos = sock, CONNECTING, group, 0
        self.since, self.buf, self.kind = time.monotonic(), b"", kind


class Pool:
    """Connections on one epoll, with the counters every mode shares."""

    def __init__(self, port: int):
        self.port = port
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.c = collections.Counter(open=0, connecting=0, opened=0, closed_by_server=0, connect_failed=0)
        self.errors = collections.Counter()

    def start(self, group, kind="") -> Conn | None:
        s, err = open_socket(self.port)
        if s is None:
            self.c["connect_failed"] += 1
            self.errors[errno.errorcode.get(err, str(err))] += 1
            return None
        conn = Conn(s, group, kind)
        self.conns[s.fileno()] = conn
        self.ep.register(s.fileno(), EPOLLOUT)
        self.c["connecting"] += 1
        return conn

    def connected(self, conn: Conn) -> bool:
        """After EPOLLOUT on a connecting socket: True if the connect succeeded (else it is closed)."""
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.c["connecting"] -= 1
        if err:
            self.c["connect_failed"] += 1
            self.errors[errno.errorcode.get(err, str(err))] += 1
            self._drop(conn)
            return False
        conn.state = OPEN
        conn.since = time.monotonic()
        self.c["open"] += 1
        self.c["opened"] += 1
        return True

    def close(self, conn: Conn, by_server: bool) -> None:
        if conn.state == CONNECTING:
            self.c["connecting"] -= 1
        else:
            self.c["open"] -= 1
        if by_server:
            self.c["closed_by_server"] += 1
        self._drop(conn)

    def _drop(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()
        conn.state = "closed"

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.ep.close()

    def counters(self) -> dict:
        out = dict(self.c)
        if self.errors:
            out["errors"] = dict(self.errors)
        return out


class Reopen:
    """Connections kept opening: `pending` groups start, at most `batch` a loop turn; a failed
    connect is retried 50 ms later; a connection the server closed reopens at once (`again`)."""

    def __init__(self, pool: Pool, groups, batch: int):
        self.pool, self.batch = pool, batch
        self.pending, self.retry = collections.deque(groups), collections.deque()  # retry: (when, group)

    def start(self, now: float) -> None:
        while self.retry and self.retry[0][0] <= now:
            self.pending.append(self.retry.popleft()[1])
        for _ in range(min(len(self.pending), self.batch)):
            group = self.pending.popleft()
            if self.pool.start(group) is None:
                self.retry.append((now + 0.05, group))

    def later(self, group) -> None:
        self.retry.append((time.monotonic() + 0.05, group))

    def again(self, conn: Conn) -> None:
        self.pool.close(conn, by_server=True)
        self.pending.append(conn.group)


def _send(conn: Conn, data: bytes) -> int | None:
    """Sends what the socket takes; None when the connection is gone."""
    try:
        return conn.sock.send(data)
    except BlockingIOError:
        return 0
    except OSError:
        return None


def _recv_gone(conn: Conn) -> tuple[bytes, bool]:
    """Reads what is there: (data, closed)."""
    data = b""
    while True:
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return data, False
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
        if len(chunk) < 65536:
            return data, False


def slowloris(args) -> None:
    pool = Pool(args.port)
    groups: list[set] = [set() for _ in range(SLOTS)]
    opener = Reopen(pool, (i % SLOTS for i in range(args.conns)), args.batch)
    c = pool.c
    c.update(drip_bytes=0, answers=0)
    tick_every = args.interval / SLOTS
    began = time.monotonic()
    deadline, next_tick, tick, next_stats = began + args.max_seconds, began + tick_every, 0, began
    while not _stopping and time.monotonic() < deadline:
        opener.start(time.monotonic())
        timeout = 0 if opener.pending else max(0.0, min(next_tick, next_stats) - time.monotonic())
        for fd, events in pool.ep.poll(timeout, 4096):
            conn = pool.conns.get(fd)
            if conn is None:
                continue
            if conn.state == CONNECTING:
                if not pool.connected(conn):
                    opener.later(conn.group)
                elif _send(conn, PARTIAL) is None:
                    opener.again(conn)
                else:
                    pool.ep.modify(fd, EPOLLIN | EPOLLRDHUP)
                    groups[conn.group].add(conn)
                continue
            data, closed = _recv_gone(conn)
            c["answers"] += data.count(b"HTTP/1.")
            if closed:
                groups[conn.group].discard(conn)
                opener.again(conn)  # reopen at once
        now = time.monotonic()
        if now >= next_tick:
            group = groups[tick % SLOTS]
            for conn in list(group):
                sent = _send(conn, DRIP[conn.pos % len(DRIP): conn.pos % len(DRIP) + 1])
                if sent is None:
                    group.discard(conn)
                    opener.again(conn)
                elif sent:
                    conn.pos += 1
                    c["drip_bytes"] += 1
            tick += 1
            next_tick += tick_every
            if now - next_tick > args.interval:  # far behind: do not try to catch up in a burst
                next_tick = now + tick_every
        if now >= next_stats:
            emit(pool.counters())
            next_stats = now + STATS_EVERY
    emit(pool.counters(), final=True)
    pool.close_all()


def _parse_answer(buf: bytes):
    """(status, complete) for one HTTP/1.1 answer at the start of buf."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None, False
    head = buf[:head_end].decode("latin-1")
    lines = head.split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, True
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip() or 0)
    return status, len(buf) >= head_end + 4 + length


def idle(args) -> None:
    pool = Pool(args.port)
    c = pool.c
    c.update(answered=0, non_200=0, answer_timeouts=0, unexpected_bytes=0, closed_before_answer=0)
    todo = args.conns
    in_progress: set = set()
    began = time.monotonic()
    deadline = began + args.max_seconds
    next_stats = began
    ready_at = None
    while not _stopping and time.monotonic() < deadline:
        now = time.monotonic()
        while todo and len(in_progress) < args.parallel:
            todo -= 1
            conn = pool.start(None)
            if conn is not None:
                in_progress.add(conn)
        for fd, events in pool.ep.poll(max(0.0, min(next_stats - now, 0.05)), 4096):
            conn = pool.conns.get(fd)
            if conn is None:
                continue
            if conn.state == CONNECTING:
                if not pool.connected(conn):
                    in_progress.discard(conn)
                    continue
                if _send(conn, REQUEST) != len(REQUEST):
                    in_progress.discard(conn)
                    c["closed_before_answer"] += 1
                    pool.close(conn, by_server=True)
                    continue
                conn.state = WAITING
                pool.ep.modify(fd, EPOLLIN | EPOLLRDHUP)
                continue
            data, closed = _recv_gone(conn)
            if conn.state == WAITING:
                conn.buf += data
                status, complete = _parse_answer(conn.buf)
                if complete:
                    c["answered" if status == 200 else "non_200"] += 1
                    conn.state, conn.buf = IDLE, b""
                    in_progress.discard(conn)
                if closed:
                    if conn.state == WAITING:
                        c["closed_before_answer"] += 1
                        in_progress.discard(conn)
                    pool.close(conn, by_server=True)
            else:
                c["unexpected_bytes"] += len(data)
                if closed:
                    pool.close(conn, by_server=True)
        now = time.monotonic()
        for conn in [x for x in in_progress if now - x.since > args.answer_timeout]:
            in_progress.discard(conn)
            c["answer_timeouts"] += 1
            pool.close(conn, by_server=False)
        if ready_at is None and not todo and not in_progress:
            ready_at = now
            emit(pool.counters(), idle=sum(1 for x in pool.conns.values() if x.state == IDLE),
                 ready=True, ramp_s=round(now - began, 2))
        if now >= next_stats:
            emit(pool.counters(), idle=sum(1 for x in pool.conns.values() if x.state == IDLE),
                 ready=ready_at is not None)
            next_stats = now + STATS_EVERY
    emit(pool.counters(), idle=sum(1 for x in pool.conns.values() if x.state == IDLE),
         ready=ready_at is not None, final=True)
    pool.close_all()


def flood(args) -> None:
    pool = Pool(args.port)
    c = pool.c
    c.update(requests_sent=0, silent_answers=0)
    opener = Reopen(pool, (i % 2 for i in range(args.conns)), args.batch)  # 0: request, never read; 1: silent
    began = time.monotonic()
    deadline, next_stats, all_started_at = began + args.max_seconds, began, None
    while not _stopping and time.monotonic() < deadline:
        now = time.monotonic()
        opener.start(now)
        if all_started_at is None and not opener.pending and not opener.retry:
            all_started_at = now
            emit(pool.counters(), all_started=True, ramp_s=round(now - began, 2))
        timeout = 0 if opener.pending else max(0.0, min(next_stats - now, 0.05))
        for fd, events in pool.ep.poll(timeout, 4096):
            conn = pool.conns.get(fd)
            if conn is None:
                continue
            if conn.state == CONNECTING:
                if not pool.connected(conn):
                    opener.later(conn.group)
                elif conn.group == 1:
                    pool.ep.modify(fd, EPOLLIN | EPOLLRDHUP)
                elif _send(conn, REQUEST) is None:
                    opener.again(conn)
                else:
                    c["requests_sent"] += 1
                    pool.ep.modify(fd, EPOLLRDHUP)  # never read: only learn when it is closed
                continue
            if conn.group == 0:
                closed = bool(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            else:
                data, closed = _recv_gone(conn)
                c["silent_answers"] += data.count(b"HTTP/1.")
            if closed:
                opener.again(conn)  # reopen at once
        now = time.monotonic()
        if now >= next_stats:
            emit(pool.counters(), all_started=all_started_at is not None)
            next_stats = now + STATS_EVERY
    emit(pool.counters(), final=True)
    pool.close_all()


def pipeline(args) -> None:
    c = collections.Counter(bytes_sent=0, requests_written=0, unread_bytes=0, closed_by_server=0)
    s = socket.create_connection((HOST, args.port), timeout=5)
    s.setblocking(False)
    c["local_port"] = s.getsockname()[1]
    ep = select.epoll()
    ep.register(s.fileno(), EPOLLOUT | EPOLLRDHUP)
    chunk = REQUEST * 2048
    pos = 0
    began = time.monotonic()
    stop_writing = began + args.seconds
    deadline = began + args.max_seconds
    next_stats = began
    blocked_since = None
    closed_at = None
    while not _stopping and time.monotonic() < deadline:
        now = time.monotonic()
        writing = now < stop_writing and closed_at is None
        if not writing and "writing_s" not in c:
            c["writing_s"] = round(now - began, 2)
            ep.modify(s.fileno(), EPOLLRDHUP)
        for _fd, events in ep.poll(max(0.0, min(next_stats, stop_writing if writing else deadline) - now), 16):
            if events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) and closed_at is None:
                closed_at = time.monotonic()
                c["closed_by_server"] = 1
                c["closed_after_s"] = round(closed_at - began, 2)
                ep.modify(s.fileno(), 0)
            if writing and events & EPOLLOUT and closed_at is None:
                while True:
                    try:
                        sent = s.send(chunk[pos:] if pos else chunk)
                    except BlockingIOError:
                        blocked_since = blocked_since or time.monotonic()
                        break
                    except OSError:
                        closed_at = time.monotonic()
                        c["closed_by_server"] = 1
                        c["closed_after_s"] = round(closed_at - began, 2)
                        ep.modify(s.fileno(), 0)
                        break
                    blocked_since = None
                    if sent:
                        c["last_write_s"] = round(time.monotonic() - began, 3)
                    c["bytes_sent"] += sent
                    pos = (pos + sent) % len(chunk)
        now = time.monotonic()
        if now >= next_stats:
            _pipeline_stats(s, c, began, blocked_since)
            emit(dict(c), writing=writing)
            next_stats = now + STATS_EVERY
    _pipeline_stats(s, c, began, blocked_since)
    emit(dict(c), final=True)
    ep.close()
    s.close()


def _pipeline_stats(s, c, began, blocked_since) -> None:
    c["requests_written"] = c["bytes_sent"] // len(REQUEST)
    try:
        c["unread_bytes"] = int.from_bytes(fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
    except OSError:
        pass
    if blocked_since is not None:
        c["blocked_since_s"] = round(blocked_since - began, 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="hostile clients for bench/hostile (127.0.0.1 only)")
    p.add_argument("mode", choices=["slowloris", "idle", "flood", "pipeline"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0, help="slowloris: seconds between two bytes")
    p.add_argument("--batch", type=int, default=1000, help="connects started per loop turn")
    p.add_argument("--parallel", type=int, default=500, help="idle: connections in progress at once")
    p.add_argument("--answer-timeout", type=float, default=10.0, help="idle: seconds to wait for an answer")
    p.add_argument("--seconds", type=float, default=10.0, help="pipeline: seconds of writing")
    p.add_argument("--max-seconds", type=float, default=120.0, help="hard bound on the whole process")
    args = p.parse_args(argv)
    _setup()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if args.conns > limit - 64:
        print(f"attackers: --conns {args.conns} does not fit the open-files limit {limit}: "
              f"using {limit - 64}", file=sys.stderr, flush=True)
        args.conns = limit - 64
    {"slowloris": slowloris, "idle": idle, "flood": flood, "pipeline": pipeline}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
