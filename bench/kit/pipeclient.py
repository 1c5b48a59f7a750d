"""A fixed-count pipelining HTTP/1.1 client for bench/syscalls: C keep-alive connections, each
writing D `GET /` requests in one send, reading the D answers, and again, until N requests have
been answered in all. ab cannot pipeline, and wrk runs for a duration rather than a request count;
bench/syscalls divides the server's kernel crossings by an exact request count.

    python3 bench/kit/pipeclient.py --port P --requests N [--connections 50] [--depth 16]

Prints ab's summary lines (complete, failed and non-2xx requests, the time taken and requests per
second: kit/parse.py's ab reader takes them, as kit/loadgen.py's pipelined() does) and exits 0 when every
request got an answer, 1 otherwise. Standard library only, one thread per connection (the
counts measured are the server's, so the client's speed matters only in how it batches).
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading
import time


def read_answers(sock: socket.socket, buf: bytearray, want: int) -> tuple[list[int], bytearray]:
    """Reads until `want` complete responses (with Content-Length bodies) are in; returns their
    status codes and the bytes left over. Raises ConnectionError if the server closes first."""
    statuses: list[int] = []
    while len(statuses) < want:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            total = end + 4 + length
            if len(buf) >= total:
                statuses.append(status)
                del buf[:total]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(statuses)} of {want} answers")
        buf += chunk
    return statuses, buf


def connection(port: int, count: int, depth: int, results: list, lock: threading.Lock) -> None:
    ok = non_2xx = failed = 0
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray()
            left = count
            while left:
                batch = min(depth, left)
                sock.sendall(request * batch)
                statuses, buf = read_answers(sock, buf, batch)
                for status in statuses:
                    if 200 <= status < 300:
                        ok += 1
                    else:
                        non_2xx += 1
                left -= batch
    except (OSError, ValueError, IndexError):
        failed = count - ok - non_2xx
    with lock:
        results.append((ok, non_2xx, failed))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pipeclient", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--depth", type=int, default=16)
    args = p.parse_args(argv)
    if args.requests < 1 or args.connections < 1 or args.depth < 1:
        p.error("--requests, --connections and --depth must be positive")
    connections = min(args.connections, args.requests)
    shares = [args.requests // connections + (1 if i < args.requests % connections else 0)
              for i in range(connections)]
    results: list = []
    lock = threading.Lock()
    began = time.monotonic()
    threads = [threading.Thread(target=connection, args=(args.port, share, args.depth, results, lock))
               for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - began
    ok = sum(r[0] for r in results)
    non_2xx = sum(r[1] for r in results)
    failed = sum(r[2] for r in results)
    print(f"Concurrency Level:      {connections}")
    print(f"Pipeline depth:         {args.depth}")
    print(f"Time taken for tests:   {seconds:.3f} seconds")
    print(f"Complete requests:      {ok + non_2xx + failed}")
    print(f"Failed requests:        {failed}")
    print(f"Non-2xx responses:      {non_2xx}")
    print(f"Requests per second:    {(ok + non_2xx + failed) / seconds:.2f} [#/sec] (mean)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
