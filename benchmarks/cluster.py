"""A SAY's delivery latency across two nodes through Redis, against one node alone.

    python benchmarks/cluster.py                 # 2,000 messages each way, about 20 seconds
    python benchmarks/cluster.py --messages 500  # shorter

Starts a real ``redis-server`` (Debian's, from PATH) and ``twistd -n tinytcp`` nodes on free
loopback ports, then measures, one message at a time, from the moment the sender's SAY
leaves its socket to the moment the receiver reads its ``MSG`` line:

- ``one node``: sender and receiver on the same tinytcp, no --redis (the room in memory);
- ``two nodes``: sender on node A, receiver on node B, both with --redis (node A delivers
  locally and PUBLISHes; Redis pushes to node B's subscription; node B delivers);
- ``one node, --redis``: both on node A with --redis (a SAY also waits for PUBLISH's reply
  before SAID; the receiver is served locally, so this shows the cost of sharing for
  clients who happen to share a node).

Prints p50, p90, p99 and max in microseconds.  Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LISTENING = re.compile(r"text mode listening on tcp:127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def twistd() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return beside if os.path.exists(beside) else shutil.which("twistd") or "twistd"


class Processes:
    """Everything started here, stopped (by PID) on exit."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.folder = tempfile.mkdtemp(prefix="tinytcp-cluster-bench-")

    def redis(self) -> int:
        port = free_port()
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", self.folder, "--logfile", os.path.join(self.folder, "redis.log")]
        self.started.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(100).startswith(b"+PONG"):
                        return port
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def node(self, *args: str) -> int:
        log = open(os.path.join(self.folder, f"node{len(self.started)}.log"), "w+b")  # noqa: SIM115
        command = [twistd(), "-n", "--pidfile=", "--logfile=-", "tinytcp", "--port", "0", "--binary-port", "none"]
        command += ["--say-rate", "0", *args]
        process = subprocess.Popen(command, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.started.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            log.seek(0)
            text = log.read().decode(errors="replace")
            match = LISTENING.search(text)
            if match and ("--redis" not in args or "chat shared through Redis" in text):
                return int(match.group(1))
            time.sleep(0.05)
        raise SystemExit(f"tinytcp did not start; see {log.name}")

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.line()  # WELCOME

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("a node closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def ask(self, request: bytes) -> bytes:
        self.sock.sendall(request + b"\r\n")
        while True:
            reply = self.line()
            if not reply.startswith(b"MSG "):
                return reply


def measure(sender: Client, receiver: Client, messages: int) -> list[float]:
    """Microseconds from SAY sent to MSG read, one message in flight at a time."""
    latencies = []
    for number in range(messages):
        text = b"m%d" % number
        start = time.perf_counter()
        sender.sock.sendall(b"SAY " + text + b"\r\n")
        while True:
            line = receiver.line()
            if line.endswith(b" " + text) and line.startswith(b"MSG "):
                break
        latencies.append((time.perf_counter() - start) * 1e6)
        reply = sender.line()
        if not reply.startswith(b"SAID"):
            raise SystemExit(f"SAY answered {reply!r}")
    return latencies


def row(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return (
        f"| {name} | {len(ordered)} | {statistics.median(ordered):,.0f} | {at(0.90):,.0f} | "
        f"{at(0.99):,.0f} | {ordered[-1]:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    options = parser.parse_args()
    processes = Processes()
    try:
        redis = processes.redis()
        url = f"redis://127.0.0.1:{redis}/0"
        alone = processes.node()
        node_a = processes.node("--redis", url)
        node_b = processes.node("--redis", url)
        rows = []
        for name, sender_port, receiver_port in (
            ("one node", alone, alone),
            ("two nodes through Redis", node_a, node_b),
            ("one node, --redis", node_a, node_a),
        ):
            sender, receiver = Client(sender_port), Client(receiver_port)
            if receiver.ask(b"NICK receiver%d" % receiver_port).startswith(b"ERROR"):
                raise SystemExit("NICK failed")
            measure(sender, receiver, min(200, options.messages))  # warm-up
            rows.append(row(name, measure(sender, receiver, options.messages)))
            sender.sock.close()
            receiver.sock.close()
        print("| SAY delivery | messages | p50 µs | p90 µs | p99 µs | max µs |")
        print("|---|---|---|---|---|---|")
        for line in rows:
            print(line)
    finally:
        processes.stop()


if __name__ == "__main__":
    main()
