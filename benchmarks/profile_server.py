"""Profile tinytcp's hot path under pipelined or request/response load (binary and text).

    python benchmarks/profile_server.py                  # cProfile (twistd --profile), both modes
    python benchmarks/profile_server.py --sampler py-spy # py-spy sampling (pip install py-spy)
    python benchmarks/profile_server.py --sampler py-spy --scenario reqresp --reactor asyncio
    python benchmarks/profile_server.py --command reverse   # REVERSE (or mixed) instead of ECHO

For each mode it starts ``twistd -n tinytcp`` on CPU 0 (under cProfile, or with py-spy
attached), drives it from CPU 1 for ``--duration`` seconds with ``loadgen.py pipelined``
(1 connection, 256 requests in flight, 32-byte payloads), ``--scenario reqresp`` (64
connections, one 32-byte request in flight on each) or ``--scenario bulk`` (1 connection, 4
ECHO frames of 1 MiB in flight; use ``--modes binary``), stops it, and
prints where the time went: the functions with the most own time, and the cumulative time of
the per-request path.  ``--reactor`` picks the Twisted reactor as in ``run.py``.
cProfile counts every call exactly but slows Python calls down by roughly 2x, so it
overstates call-heavy code; py-spy samples the unmodified server.  Use both.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import REACTORS, Server, free_port, raise_fd_limit, twistd_command  # noqa: E402

LOADGEN = os.path.join(HERE, "loadgen.py")


def shorten(path: str) -> str:
    path = re.sub(r".*/site-packages/", "", path)
    return re.sub(r".*/(tinytcp|twisted)/", r"\1/", path)


SCENARIOS = {
    "pipelined": ["pipelined", "--window", "256", "--size", "32"],
    "reqresp": ["reqresp", "--conns", "64", "--size", "32"],
    "bulk": ["bulk", "--window", "4", "--size", str(1024 * 1024)],
}
LOADS = {
    "pipelined": "256 in flight on 1 connection, 32-byte payloads",
    "reqresp": "64 connections, 1 in flight each, 32-byte payloads",
    "bulk": "4 in flight on 1 connection, 1 MiB payloads",
}


def loadgen(
    pin: list[str], mode: str, port: int, duration: float, scenario: str = "pipelined", command: str = "echo"
) -> str:
    """Run one loadgen scenario against ``port``; its JSON result."""
    cmd = pin + [sys.executable, LOADGEN, *SCENARIOS[scenario], "--mode", mode, "--port", str(port)]
    cmd += ["--command", command]
    cmd += ["--duration", str(duration), "--warmup", "0.2", "--timeout", str(duration + 30)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout.strip()


def cprofile_mode(args: argparse.Namespace, mode: str, workdir: str, pin: list[list[str]]) -> None:
    stats_file = os.path.join(workdir, f"{mode}.pstats")
    text_port, binary_port = free_port(), free_port()
    cmd = pin[0] + [
        *twistd_command(args.reactor),
        "-n",
        "--pidfile=",
        f"--logfile={os.path.join(workdir, mode + '.log')}",
        f"--profile={stats_file}",
        "--profiler=cprofile",
        "--savestats",
        "tinytcp",
        "--port",
        f"tcp:{text_port}:interface=127.0.0.1",
        "--binary-port",
        f"tcp:{binary_port}:interface=127.0.0.1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        wait_ready(proc, text_port, binary_port)
        port = text_port if mode == "text" else binary_port
        print(f"  load: {loadgen(pin[1], mode, port, args.duration, args.scenario, args.command)}")
    finally:
        stop(proc)
    stats = pstats.Stats(stats_file)
    total = stats.total_tt
    print(f"  cProfile: {total:.2f}s of profiled time; top {args.top} by own time")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[: args.top]
    print(f"  {'own %':>6} {'own s':>7} {'cum s':>7} {'calls':>10}  function")
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in rows:
        print(f"  {tt / total:6.1%} {tt:7.3f} {ct:7.3f} {nc:10d}  {name} ({shorten(filename)}:{line})")


def wait_ready(proc: subprocess.Popen, *ports: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def pyspy_mode(args: argparse.Namespace, mode: str, workdir: str, pin: list[list[str]]) -> None:
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(pyspy):
        sys.exit("py-spy not found: pip install py-spy")
    server = Server("tinytcp", workdir, pin[0], [], reactor=args.reactor).start()
    raw = os.path.join(workdir, f"{mode}.spy")
    try:
        spy = subprocess.Popen(
            pin[1]
            + [pyspy, "record", "--pid", str(server.pid), "--rate", str(args.rate), "--format", "raw", "-o", raw]
            + ["--duration", str(int(args.duration + 1)), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            load = loadgen(pin[1], mode, server.port(mode), args.duration, args.scenario, args.command)
            print(f"  load: {load}")
            spy.wait(timeout=args.duration + 30)
        finally:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=10)
    finally:
        server.stop()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            raw_frames = stack.split(";")
            frames = [re.sub(r" \((.*?):\d+\)$", lambda m: f" ({shorten(m.group(1))})", fr) for fr in raw_frames]
            if raw_frames[-1].startswith("EPollReactor.doPoll ") and "tinytcp/server/reactor.py" in raw_frames[-1]:
                # tinytcp's reactor dispatches events inside doPoll: only its poll line is waiting
                if not raw_frames[-1].endswith(f":{TINYTCP_POLL_LINE})"):
                    frames[-1] = "dispatch in EPollReactor.doPoll (tinytcp/server/reactor.py)"
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    # py-spy cannot tell waiting in epoll_wait from work here: those samples end in the frame
    # that calls it (EPollReactor.doPoll; EpollSelector.select under the asyncio reactor; and
    # under uvloop, whose loop is C, AsyncioSelectorReactor.run, which also holds uvloop's own work)
    waiting = sum(n for frame, n in own.items() if frame.startswith(WAITING))
    busy = max(total - waiting, 1)
    print(f"  py-spy: {total} samples at {args.rate}/s, {waiting / total:.0%} waiting in epoll_wait ({WAITING_NAMES});")
    print("  shares below are of the other, busy samples")
    print("  own time:")
    for frame, n in own.most_common(args.top + 3):
        if not frame.startswith(WAITING):
            print(f"  {n / busy:6.1%}  {frame}")
    print("  inclusive time (tinytcp and Twisted protocol frames):")
    for frame, n in inclusive.most_common(args.top * 3):
        if frame.startswith(WAITING):  # holds the waiting samples too
            continue
        if any(part in frame for part in ("(tinytcp/", "tcp.py", "abstract.py", "log.py", "asyncio", "epollreactor")):
            print(f"  {n / busy:6.1%}  {frame}")


#: the line of tinytcp's reactor that waits in epoll_wait
with open(os.path.join(HERE, "..", "tinytcp", "server", "reactor.py")) as _reactor_source:
    TINYTCP_POLL_LINE = next(n for n, text in enumerate(_reactor_source, 1) if "self._poller.poll(" in text)
WAITING = ("EPollReactor.doPoll ", "EpollSelector.select ", "_PollLikeSelector.select ", "AsyncioSelectorReactor.run ")
WAITING_NAMES = "doPoll, EpollSelector.select or, on uvloop, AsyncioSelectorReactor.run"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sampler", choices=("cprofile", "py-spy"), default="cprofile")
    parser.add_argument("--modes", nargs="+", default=["binary", "text"], choices=["binary", "text"])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="pipelined")
    parser.add_argument("--reactor", choices=REACTORS, default="default", help="as run.py --reactor")
    parser.add_argument("--command", choices=("echo", "reverse", "mixed"), default="echo", help="as loadgen.py")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    raise_fd_limit()
    pin: list[list[str]] = [[], []]
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        pin = [["taskset", "-c", "0"], ["taskset", "-c", "1"]]
    workdir = tempfile.mkdtemp(prefix="tinytcp-profile-")
    for mode in args.modes:
        command = {"echo": "ECHO", "reverse": "REVERSE"}.get(args.command, args.command)
        title = f"{args.scenario} {mode} {command}, {LOADS[args.scenario]}"
        print(f"== {title} ({args.sampler}, reactor {args.reactor})", flush=True)
        if args.sampler == "cprofile":
            cprofile_mode(args, mode, workdir, pin)
        else:
            pyspy_mode(args, mode, workdir, pin)
        print(flush=True)
    print(f"raw profiles in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
