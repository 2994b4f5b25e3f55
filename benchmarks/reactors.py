"""Compare the Twisted reactors tinytcp can run on, with the asyncio reference as a yardstick.

    python benchmarks/reactors.py                                # tinytcp, epoll, asyncio, uvloop: about 8 minutes
    python benchmarks/reactors.py --reactors epoll asyncio --repeats 3 --duration 1
    python benchmarks/reactors.py --tinytcp-commit HEAD --json reactors.json

Starts one ``twistd -n tinytcp`` per reactor (``--reactor=tinytcp``, tinytcp's default;
``--reactor=epoll``, Twisted's; ``--reactor=asyncio``, and
for ``uvloop`` Twisted's asyncio reactor on uvloop through ``twistd_uvloop.py``, which needs
``pip install uvloop``) plus ``reference_server.py`` on plain asyncio, all pinned to CPU 0,
and drives the pipelined and request/response scenarios of ``run.py`` (same loadgen
arguments) from CPU 1, alternating the servers in every round (epoll, asyncio, uvloop,
reference, tinytcp, ...).  Prints the median of every metric per server and each reactor's
ratio to the first one given (tinytcp by default).  Which reactor and event loop each tinytcp
really ran on is read back from its own log (twistd's ``reactor class:`` line, and the line
``twistd_uvloop.py`` prints with the class of the reactor's ``_asyncioEventloop``) and printed.
``epoll-nolog`` and ``uvloop-nolog`` are Twisted's reactors without ``log.callWithLogger`` around
every event (``twistd_nolog.py``, the experiment that led to tinytcp's reactor).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402

#: the lines of a server's logs that say which reactor and event loop it runs on
MARKS = ("reactor class:", "twistd_uvloop:", "twistd_nolog:")


def reactor_lines(server: bench.Server) -> list[str]:
    """What the server's own logs say about its reactor and event loop."""
    lines = []
    out = server.log[: -len(".log")] + ".out"
    for path in (server.log, out):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(path, errors="replace") as f:
                    found = [line.strip() for line in f if any(mark in line for mark in MARKS)]
            except OSError:
                found = []
            if found or path == out:
                break
            time.sleep(0.1)
        lines += found
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--reactors",
        nargs="+",
        choices=[r for r in bench.REACTORS if r != "default"],
        default=["tinytcp", "epoll", "asyncio", "uvloop"],
        help="reactors to compare; ratios are to the first",
    )
    parser.add_argument("--no-reference", action="store_true", help="leave the asyncio reference out")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (at least 3)")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each run")
    parser.add_argument(
        "--only",
        nargs="*",
        help="scenarios whose name or command contains one of these words (default ECHO; or REVERSE, mixed, text...)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--json", help="also write every raw result to this file")
    parser.add_argument("--tinytcp-commit", metavar="REV", help="benchmark tinytcp as committed at REV")
    args = parser.parse_args()
    args.repeats = max(3, args.repeats)
    if len(set(args.reactors)) != len(args.reactors):
        parser.error("each reactor once")

    bench.raise_fd_limit()
    signal.signal(signal.SIGTERM, bench.on_signal)
    signal.signal(signal.SIGINT, bench.on_signal)
    pin_server: list[str] = []
    pin_loadgen: list[str] = []
    if not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        pin_server, pin_loadgen = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    logdir = tempfile.mkdtemp(prefix="tinytcp-reactors-")
    machine = bench.machine_description()
    env = None
    if args.tinytcp_commit:
        env, machine["tinytcp"] = bench.commit_env(args.tinytcp_commit, logdir)
    for reactor in args.reactors:
        machine[f"reactor {reactor}"] = bench.reactor_description(reactor)

    # run.py's pipelined and request/response scenarios, with this run's duration: the ECHO
    # ones unless --only names others (REVERSE, mixed)
    chosen = bench.scenarios(
        argparse.Namespace(
            duration=args.duration,
            warmup=args.warmup,
            idle_modes=[],
            idle_conns=0,
            fanout_conns=0,
            quick=False,
            only=args.only or ["ECHO"],
        )
    )
    chosen = [s for s in chosen if s.name.startswith(("pipelined", "request/response"))]
    names = [f"tinytcp {r}" for r in args.reactors] + ([] if args.no_reference else ["reference"])

    print("tinytcp reactor comparison:", " ".join(sys.argv))
    for key, value in machine.items():
        print(f"  {key}: {value}")
    print(f"  pinning: {'servers on CPU 0, load generator on CPU 1 (taskset)' if pin_server else 'none'}")
    print(f"  rounds: {args.repeats}, timed runs {args.warmup}s warm-up + {args.duration}s measured", flush=True)

    servers: dict[str, bench.Server] = {}
    results: dict[str, dict[str, list[dict]]] = {}
    failed = False
    t_start = time.monotonic()
    try:
        for name in names:
            if name == "reference":
                server = bench.Server("reference", logdir, pin_server, [])
            else:
                server = bench.Server("tinytcp", logdir, pin_server, [], env, name.split()[1])
            servers[name] = server.start()
            lines = reactor_lines(server) if name != "reference" else ["asyncio (stock event loop)"]
            print(f"  {name}: pid {server.pid}; " + ("; ".join(lines) or "no reactor line in its log"), flush=True)
            machine[f"{name} log"] = lines
            if name.startswith("tinytcp uvloop") and not any("on uvloop.Loop" in line for line in lines):
                raise RuntimeError(f"{name} is not running on uvloop.Loop")
        print(flush=True)
        for scenario in chosen:
            print(f"== {scenario.name}", flush=True)
            per_server = results.setdefault(scenario.name, {})
            for round_no in range(1, args.repeats + 1):
                for name in names:
                    result = bench.run_loadgen(scenario, servers[name], pin_loadgen)
                    per_server.setdefault(name, []).append(result)
                    print(f"   round {round_no} {name:20} {bench.short(result, scenario)}", flush=True)
                    failed = failed or not result.get("ok")
    except bench.Interrupted as e:
        print(f"\ninterrupted ({e}); stopping servers", file=sys.stderr)
        failed = True
    finally:
        for server in servers.values():
            server.stop()

    base = names[0]
    others = [n for n in names[1:] if n != "reference"]
    header = ["scenario", "metric", *names, *(f"{n.split()[1]}/{base.split()[1]}" for n in others)]
    rows = [header]
    for scenario in chosen:
        per_server = results.get(scenario.name, {})
        first = True
        metrics = [m[:3] for m in scenario.metrics]
        at = next(i for i, m in enumerate(metrics) if m[0] == "cpu_us_per_req") + 1
        metrics[at:at] = [
            ("user_us_per_req", "  user us/req", "{:.2f}"),
            ("system_us_per_req", "  system us/req", "{:.2f}"),
        ]
        for key, label, fmt in metrics:
            values = {n: bench.median_of(per_server.get(n, []), key) for n in names}
            ratios = []
            for n in others:
                v, b = values[n], values[base]
                ratios.append(f"{v / b:.2f}x" if v is not None and b else "-")
            cells = [fmt.format(values[n]) if values[n] is not None else "-" for n in names]
            rows.append([scenario.name if first else "", label, *cells, *ratios])
            first = False
        for label, median, most in bench.load_rows([r for n in names for r in per_server.get(n, [])]):
            rows.append(["", label, median, most] + [""] * (len(header) - 4))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    print(
        f"\nmedians of {args.repeats} alternated rounds; ratios are to {base}; "
        f"{time.monotonic() - t_start:.0f}s in all\n"
    )
    for n, row in enumerate(rows):
        print("| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\nhigher is better for req/s; lower for latency and CPU.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "argv": sys.argv, "args": vars(args), "results": results}, f, indent=1)
        print(f"raw results: {args.json}")
    if failed:
        print(f"server logs: {logdir}")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
