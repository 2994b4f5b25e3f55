"""What a hostile client costs the server, and a bystander, on the real ``twistd tinytcp``.

    python benchmarks/hostile.py                           # this tree
    python benchmarks/hostile.py --tinytcp-commit 84f72b8  # the same, for an older commit

It plays one hostile client at a time for ``--seconds``, while a bystander in a process of
its own sends ``ECHO ping`` and waits for the reply every 2 ms.  The server runs on CPU 0,
and the clients on CPU 1.  For each client it prints:

- the server's CPU time and its RSS growth (at the end of the play, and after the client is
  gone);
- the bystander's p50, p99 and worst round trip.

The clients:

- ``never reads``: pipelines HELP frames (96-byte replies) and never reads a byte;
- ``byte at a time``: sends a 59-byte REVERSE line one byte per send, then reads the reply,
  over and over;
- ``flood``: pipelines REVERSE lines as fast as it can, and reads every reply;
- ``vanish``: up to 3,000 connections, half of them text and half binary, each sending half
  a request, then closed with an RST (played twice, to tell a leak from the allocator's
  high-water mark).

Everything goes to 127.0.0.1, and every client stops by itself.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import Server, commit_env  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_and_rss(pid: int) -> tuple[float, int]:
    """The process's CPU seconds (user + system) and its RSS in bytes."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return (int(fields[11]) + int(fields[12])) / TICK, rss * 1024


def bystander(port: int, stop: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    """Round trips of ``ECHO ping``, in a process of its own."""
    lat = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.recv(100)
        replies = s.makefile("rb")
        while not stop.is_set():
            start = time.perf_counter()
            s.sendall(b"ECHO ping\n")
            line = replies.readline()
            lat.append(time.perf_counter() - start)
            if line != b"ECHO ping\r\n":
                raise SystemExit(f"bystander got {line!r}")
            time.sleep(0.002)
    out.put(lat)


def never_reads(server: Server, seconds: float) -> tuple[dict, list[socket.socket]]:
    s = socket.create_connection(("127.0.0.1", server.binary_port))
    s.setblocking(False)
    chunk = struct.pack(">BI", 5, 0) * 10_000
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    return {"bytes sent": sent}, [s]


def byte_at_a_time(server: Server, seconds: float) -> tuple[dict, list[socket.socket]]:
    s = socket.create_connection(("127.0.0.1", server.text_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.recv(100)
    line = b"REVERSE " + b"x" * 50 + b"\n"
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for byte in line:
            s.send(bytes([byte]))
        sent += len(line)
        s.recv(200)
    return {"bytes sent one per send": sent}, [s]


def flood(server: Server, seconds: float) -> tuple[dict, list[socket.socket]]:
    s = socket.create_connection(("127.0.0.1", server.text_port))
    s.recv(100)
    chunk = b"REVERSE abcdefghijklmnopqrstuvwxyz012345\n" * 1000
    stop = threading.Event()
    got = [0]

    def read() -> None:
        while not stop.is_set():
            data = s.recv(1 << 20)
            if not data:
                return
            got[0] += data.count(b"\n")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(chunk)
    time.sleep(0.5)
    stop.set()
    return {"replies read": got[0]}, [s]


def vanish(server: Server, seconds: float) -> tuple[dict, list[socket.socket]]:
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end and count < 3000:
        binary = count % 2 == 1
        s = socket.create_connection(("127.0.0.1", server.binary_port if binary else server.text_port))
        s.send(struct.pack(">BI", 1, 100_000) + b"y" * 1000 if binary else b"ECHO half a li")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # an RST, in the middle of a request
        count += 1
    return {"connections that vanished": count}, []


PLAYS = [
    ("nobody", None),
    ("never reads", never_reads),
    ("byte at a time", byte_at_a_time),
    ("flood", flood),
    ("vanish", vanish),
    ("vanish again", vanish),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--tinytcp-commit", metavar="REV", help="serve tinytcp as committed at REV")
    args = parser.parse_args()
    logdir = tempfile.mkdtemp(prefix="tinytcp-hostile-")
    env = commit_env(args.tinytcp_commit, logdir)[0] if args.tinytcp_commit else None
    os.sched_setaffinity(0, {1})
    server = Server("tinytcp", logdir, ["taskset", "-c", "0"], [], env=env).start()
    results: dict[str, dict] = {}
    try:
        for name, play in PLAYS:
            stop, queue = multiprocessing.Event(), multiprocessing.Queue()
            watcher = multiprocessing.Process(target=bystander, args=(server.text_port, stop, queue))
            cpu0, rss0 = cpu_and_rss(server.pid)
            watcher.start()
            time.sleep(0.3)
            extra, held = play(server, args.seconds) if play else ({}, [])
            if play is None:
                time.sleep(args.seconds)
            cpu1, rss1 = cpu_and_rss(server.pid)
            stop.set()
            lat = sorted(queue.get(timeout=30))
            watcher.join()
            for s in held:
                s.close()
            time.sleep(0.5)
            rss2 = cpu_and_rss(server.pid)[1]
            results[name] = {
                **extra,
                "server CPU s": round(cpu1 - cpu0, 2),
                "RSS growth KB": (rss1 - rss0) // 1024,
                "RSS growth after close KB": (rss2 - rss0) // 1024,
                "bystander p50 ms": round(lat[len(lat) // 2] * 1000, 3),
                "bystander p99 ms": round(lat[int(len(lat) * 0.99)] * 1000, 3),
                "bystander max ms": round(lat[-1] * 1000, 1),
            }
            print(name, json.dumps(results[name]), flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
