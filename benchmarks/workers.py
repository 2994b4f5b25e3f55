"""``--workers``: how evenly clients spread over the workers, and what a second worker buys.

    python benchmarks/workers.py spread               # reuseport vs shared, 1,000 connections per pattern
    python benchmarks/workers.py rate                 # req/s, --workers 1 vs --workers 2 (loadgen.py)

``spread`` starts ``twistd -n tinytcp --workers 2 --separate-rooms`` once per way of sharing
a listener (``--worker-sockets reuseport`` and ``shared``) and asks every connection
``INFO server``, whose ``worker`` field says which worker accepted it, in two patterns:

- ``held``: 1,000 connections opened one after another and kept open, then each asked;
- ``serial``: 1,000 connections one at a time (open, ask, close), a mostly idle server;
- ``loaded``: ``serial`` while loadgen.py's pipelined stream keeps one worker busy (``busy``
  names it); p50/p99 is the time from connect to the INFO reply.

``rate`` runs benchmarks/loadgen.py against ``--workers 1`` and ``--workers 2`` in turn,
``--repeats`` times, and prints the median requests per second of each scenario, with the
CPU the server's processes used (in cores, from /proc: the supervisor and every worker), the
load generator's own CPU share, and the rest of the machine's busy CPU meanwhile, in cores:
``softirq`` (interrupts and softirqs, where the kernel runs most of loopback TCP) and
``other`` (every other program, and kernel time charged to none).  Nothing is
pinned: the workers and the load generator share the machine's cores, as they would in use.

Every server started here is stopped (SIGTERM, then SIGKILL by pid) on exit.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN = os.path.join(HERE, "loadgen.py")
LISTENING = re.compile(r"(text|binary) mode listening on tcp:127\.0\.0\.1:(\d+)")


def twistd() -> str:
    return os.path.join(os.path.dirname(sys.executable), "twistd")


class Server:
    """``twistd -n tinytcp`` on free loopback ports, with the given options."""

    def __init__(self, *options: str) -> None:
        self.log = tempfile.TemporaryFile()
        command = [twistd(), "-n", "--pidfile=", "tinytcp", "--port", "0", "--binary-port", "0", *options]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.ports: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while len(self.ports) < 2:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + self.text())
            self.ports = {mode: int(port) for mode, port in LISTENING.findall(self.text())}
            time.sleep(0.05)
        self.wait_ready()

    def text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def wait_ready(self) -> None:
        """Until every worker answers: a reuseport socket of a worker still starting holds its clients."""
        workers = int(info(self.ports["text"])["workers"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(re.findall(r"worker \d+ \[\d+\] .*reactor class", self.text())) >= workers or workers == 1:
                return
            time.sleep(0.05)
        raise RuntimeError("workers did not start:\n" + self.text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed after {data!r}")
        data += chunk
    return data


def ask(sock: socket.socket) -> dict[str, str]:
    sock.sendall(b"INFO server\n")
    fields = read_line(sock).decode().split()[1:]
    return dict(field.split(":", 1) for field in fields)


def info(port: int) -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        read_line(sock)
        return ask(sock)


def busy_worker(server: Server, seconds: float) -> tuple[subprocess.Popen[str], str]:
    """Keep one worker busy: loadgen's pipelined stream on one binary connection; which worker it is."""
    port = server.ports["binary"]
    command = [sys.executable, LOADGEN, "pipelined", "--port", str(port), "--duration", str(seconds)]
    load = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # the load generator's warm-up: its connection is open and busy
    found = re.findall(r"worker (\d+) \[\d+\] 127\.0\.0\.1:\d+ connected \(binary\)", server.text())
    return load, found[-1] if found else "?"


def spread(args: argparse.Namespace) -> None:
    rows = []
    for way in ("reuseport", "shared"):
        for pattern in ("held", "serial", "loaded"):
            counts: collections.Counter[str] = collections.Counter()
            waits: list[float] = []
            busy = "-"
            server = Server("--workers", "2", "--separate-rooms", "--worker-sockets", way)
            load = None
            try:
                port = server.ports["text"]
                if pattern == "held":
                    socks = []
                    for _ in range(args.connections):
                        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                    for sock in socks:
                        read_line(sock)
                        counts[ask(sock)["worker"]] += 1
                        sock.close()
                else:
                    if pattern == "loaded":
                        load, busy = busy_worker(server, 60)
                    for _ in range(args.connections):
                        started = time.perf_counter()
                        counts[info(port)["worker"]] += 1
                        waits.append(time.perf_counter() - started)
            finally:
                if load is not None:
                    load.kill()
                    load.wait()
                server.stop()
            shares = [counts.get(str(worker), 0) for worker in (1, 2)]
            waits.sort()
            p50 = f"{waits[len(waits) // 2] * 1e3:.2f}" if waits else "-"
            p99 = f"{waits[int(len(waits) * 0.99)] * 1e3:.2f}" if waits else "-"
            rows.append((way, pattern, shares, busy, p50, p99))
    print(f"{'sockets':<10} {'pattern':<7} {'worker 1':>9} {'worker 2':>9} {'busy':>5} {'p50 ms':>7} {'p99 ms':>7}")
    for way, pattern, shares, busy, p50, p99 in rows:
        print(f"{way:<10} {pattern:<7} {shares[0]:>9} {shares[1]:>9} {busy:>5} {p50:>7} {p99:>7}")


SCENARIOS = {
    "reqresp binary, 64 conns": ["reqresp", "--mode", "binary", "--conns", "64"],
    "reqresp text, 64 conns": ["reqresp", "--mode", "text", "--conns", "64"],
    "reqresp REVERSE text, 64 conns": ["reqresp", "--mode", "text", "--conns", "64", "--command", "reverse"],
    "pipelined binary, 1 conn": ["pipelined", "--mode", "binary"],
}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> tuple[float, float]:
    """CPU time the machine's CPUs have spent busy so far (all but idle and iowait), and of it in
    interrupts and softirqs (where the kernel runs most of loopback TCP), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(value) for value in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK, (fields[5] + fields[6]) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the load generator runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_pids(server: Server) -> list[int]:
    """The twistd process and every worker it started."""
    return [server.process.pid, *(int(pid) for pid in re.findall(r"worker \d+ \[(\d+)\] started", server.text()))]


def rate(args: argparse.Namespace) -> None:
    results: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    busy: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    #: CPU cores the server's processes (supervisor and workers) used during the load generator's run
    cores: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    #: the rest of the machine's busy CPU meanwhile, in cores: interrupts and softirqs, then any other program
    other: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    softirq: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for _ in range(args.repeats):
        for workers in (1, 2):
            options = ["--workers", str(workers)] + (["--separate-rooms"] if workers > 1 else [])
            server = Server(*options)
            try:
                for name, scenario in SCENARIOS.items():
                    mode = scenario[scenario.index("--mode") + 1]
                    command = [sys.executable, LOADGEN, *scenario, "--port", str(server.ports[mode])]
                    command += ["--duration", str(args.duration)]
                    pids = server_pids(server)
                    before = sum(cpu_seconds(pid) for pid in pids)
                    (machine, irq), loadgen = machine_busy_seconds(), children_cpu_seconds()
                    started = time.monotonic()
                    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
                    wall = time.monotonic() - started
                    used = (sum(cpu_seconds(pid) for pid in pids) - before) / wall
                    cores[(name, workers)].append(used)
                    loadgen_cores = (children_cpu_seconds() - loadgen) / wall
                    machine_after, irq_after = machine_busy_seconds()
                    softirq[(name, workers)].append((irq_after - irq) / wall)
                    rest = (machine_after - machine - irq_after + irq) / wall - used - loadgen_cores
                    other[(name, workers)].append(rest)
                    result = json.loads(done.stdout)
                    if not result.get("ok"):
                        raise RuntimeError(f"{name}: {result}")
                    results[(name, workers)].append(result["req_per_s"])
                    busy[(name, workers)].append(result["loadgen_cpu_busy"])
            finally:
                server.stop()
    print(
        f"{'scenario':<32} {'--workers 1':>12} {'--workers 2':>12} {'ratio':>6}"
        "  server cores (1 / 2)  loadgen CPU (1 / 2)  softirq (1 / 2)  other (1 / 2)  range (1 / 2)"
    )
    for name in SCENARIOS:
        one, two = results[(name, 1)], results[(name, 2)]
        ratio = statistics.median(two) / statistics.median(one)
        server = f"{statistics.median(cores[(name, 1)]):.2f} / {statistics.median(cores[(name, 2)]):.2f}"
        cpu = f"{statistics.median(busy[(name, 1)]):.0%} / {statistics.median(busy[(name, 2)]):.0%}"
        irq = f"{statistics.median(softirq[(name, 1)]):.2f} / {statistics.median(softirq[(name, 2)]):.2f}"
        rest = f"{statistics.median(other[(name, 1)]):.2f} / {statistics.median(other[(name, 2)]):.2f}"
        spread = f"{min(one):,.0f}-{max(one):,.0f} / {min(two):,.0f}-{max(two):,.0f}"
        print(
            f"{name:<32} {statistics.median(one):>12,.0f} {statistics.median(two):>12,.0f} {ratio:>6.2f}"
            f"  {server:<20}  {cpu:<19}  {irq:<15}  {rest:<13}  {spread}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("spread", help="clients per worker, reuseport vs shared")
    p.add_argument("--connections", type=int, default=1000)
    p = sub.add_parser("rate", help="req/s, --workers 1 vs 2")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spread(args) if args.what == "spread" else rate(args)


if __name__ == "__main__":
    main()
