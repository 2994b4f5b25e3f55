"""Wall time and peak memory of one-shot ``tinytcp-client TIME`` runs, process start to exit.

    python benchmarks/startup.py                      # this checkout, 10 runs against a server it starts
    python benchmarks/startup.py --port 40000         # against a server already running
    python benchmarks/startup.py --tree /tmp/old .    # another checkout's tinytcp beside this one, in turn

A client that sends one command spends nearly all its life importing, so this is the figure
of issue 13's start-up bullet.  Each ``--tree`` runs ``python -m tinytcp.client --port P
TIME`` with that folder as its working directory, so its ``tinytcp`` package is the one
imported (the same Python, so the same Twisted); trees take turns run by run, after one
warm-up each, and every run must print a TIME line.  Peak memory is the child's
``ru_maxrss``.  Standard library only, Linux (``os.wait4``).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen[bytes]:
    """``twistd -n tinytcp`` on ``port`` (text mode only), once it greets."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    command = [twistd, "-n", "--pidfile=", "--logfile=/dev/null", "tinytcp", "--port", str(port)]
    server = subprocess.Popen([*command, "--binary-port", "none"], cwd=ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"WELCOME "):
                    return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server on port {port} did not start")


def one_run(tree: str, port: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one client run from ``tree``."""
    command = [sys.executable, "-m", "tinytcp.client", "--port", str(port), "TIME"]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=tree, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    if child.returncode != 0 or not output.startswith(b"TIME "):
        raise SystemExit(f"{tree}: exit status {child.returncode}, output {output!r}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="a running server's text port (default: start one)")
    parser.add_argument("--runs", type=int, default=10, help="counted runs per tree (default 10)")
    parser.add_argument("--tree", nargs="+", default=[ROOT], help="checkouts whose tinytcp to run (default: this)")
    args = parser.parse_args()
    port = args.port or free_port()
    server = None if args.port else start_server(port)
    try:
        for tree in args.tree:
            one_run(tree, port)  # warm-up: the page cache, and bytecode where it may be written
        results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in args.tree}
        for _ in range(args.runs):
            for tree in args.tree:
                results[tree].append(one_run(tree, port))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
    print(f"{args.runs} runs each of python -m tinytcp.client --port {port} TIME")
    print(f"{'tree':<40} {'wall median s':>13} {'min':>7} {'max':>7} {'peak MiB':>9}")
    for tree, runs in results.items():
        walls = [wall for wall, _ in runs]
        peak = max(rss for _, rss in runs)
        print(f"{tree:<40} {statistics.median(walls):>13.3f} {min(walls):>7.3f} {max(walls):>7.3f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
