"""Benchmark runner: tinytcp (the real ``twistd -n tinytcp``) against an asyncio reference.

    python benchmarks/run.py --quick             # about 2 minutes
    python benchmarks/run.py                     # the full run, about 15 minutes
    python benchmarks/run.py --quick --only REVERSE   # a subset: words of the names or commands

In one run it starts three servers on free loopback ports:

- ``tinytcp``: ``twistd -n tinytcp``, from the bin directory of the Python running this;
- ``reference``: ``benchmarks/reference_server.py``, the same bytes on asyncio's Protocol API;
- ``ceiling``: ``benchmarks/trivial_server.py``, which parses nothing; what the load generator
  reaches against it is the most it can measure here.

and drives each scenario with ``benchmarks/loadgen.py``, alternating the servers (tinytcp,
reference, ceiling, tinytcp, reference, ...) for ``--repeats`` rounds, then prints the median
of every metric and the tinytcp/reference ratio.  Servers run on CPU 0 and the load
generator on CPU 1 (``taskset``) when the machine has two CPUs or more.  The idle scenario
starts a fresh server for every measurement, so that RSS growth is not hidden by memory an
earlier scenario freed.  The soft RLIMIT_NOFILE is raised to the hard limit for this
process and every child.  Every process started here is stopped on exit, error or Ctrl+C.

The pipelined and request/response scenarios run for ECHO, for REVERSE and for the mixed
stream of ``loadgen.py --command mixed`` (ECHO, REVERSE, HELP, HELP ECHO, an unknown command
in turn), in both wire formats; the ceiling server only answers ECHO, so those rows have no
ceiling and the load generator's own CPU share says whether it was the limit.

Besides wall-clock rates it reports the server's own CPU time per request (from /proc),
which stays meaningful when other programs share the machine, and the share of CPU 0 that
other programs used during the runs (``other load``), so a noisy run can be recognised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADGEN = os.path.join(HERE, "loadgen.py")
SERVERS = ("tinytcp", "reference", "ceiling")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


class Interrupted(Exception):
    pass


def on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(f"signal {signum}")


# ---------------------------------------------------------------------------------------
# environment


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def twistd_path() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(beside):
        return beside
    found = shutil.which("twistd")
    if not found:
        sys.exit("twistd not found beside this Python or on PATH: pip install -e . first")
    return found


#: --reactor choices: twistd tinytcp's default (tinytcp's own epoll reactor, tinytcp/server/reactor.py,
#: also named "tinytcp"), a named Twisted reactor ("epoll" is Twisted's), Twisted's asyncio reactor
#: on uvloop (benchmarks/twistd_uvloop.py, pip install uvloop), and, as an experiment, Twisted's
#: epoll or uvloop without log.callWithLogger per event (benchmarks/twistd_nolog.py)
REACTORS = ("default", "tinytcp", "epoll", "poll", "select", "asyncio", "uvloop", "epoll-nolog", "uvloop-nolog")


def twistd_command(reactor: str = "default") -> list[str]:
    """The command that starts twistd with ``reactor``, before twistd's own options."""
    if reactor == "uvloop":
        return [sys.executable, os.path.join(HERE, "twistd_uvloop.py"), "--reactor=asyncio"]
    if reactor == "epoll-nolog":
        return [sys.executable, os.path.join(HERE, "twistd_nolog.py"), "--reactor=epoll"]
    if reactor == "uvloop-nolog":
        return [sys.executable, os.path.join(HERE, "twistd_nolog.py"), "--uvloop", "--reactor=asyncio"]
    if reactor == "default":
        return [twistd_path()]
    return [twistd_path(), f"--reactor={reactor}"]


def command_output(cmd: list[str], env: dict | None = None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT, env=env).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_description() -> dict:
    lscpu = command_output(["lscpu"])
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    try:
        import twisted

        twisted_version = twisted.__version__
    except ImportError:
        twisted_version = "?"
    head = command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "status", "--porcelain", "--", "tinytcp", "twisted"])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted_version,
        "tinytcp": head + (" + uncommitted changes in tinytcp/" if dirty else ""),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def commit_env(rev: str, logdir: str) -> tuple[dict, str]:
    """An environment whose PYTHONPATH puts tinytcp as committed at ``rev`` (a ``git archive``
    of tinytcp/ and twisted/plugins unpacked under ``logdir``) before the installed one, and
    a description of it."""
    commit = command_output(["git", "rev-parse", "--short", rev])
    if not commit:
        sys.exit(f"unknown commit {rev}")
    src = os.path.join(logdir, "src")
    os.mkdir(src)
    archive = subprocess.run(
        ["git", "archive", commit, "tinytcp", "twisted"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env, f"{commit} (git archive of {rev}, no uncommitted changes)"


def reactor_description(reactor: str) -> str:
    if reactor.endswith("-nolog"):
        base = reactor_description(reactor[: -len("-nolog")])
        return f"{base}, without log.callWithLogger per event (benchmarks/twistd_nolog.py, an experiment)"
    if reactor == "uvloop":
        try:
            import uvloop
        except ImportError:
            sys.exit("--reactor uvloop needs uvloop: pip install uvloop")
        return f"asyncio reactor on uvloop {uvloop.__version__} (benchmarks/twistd_uvloop.py)"
    if reactor == "default":
        return "twistd's default (epoll on Linux)"
    return f"twistd --reactor={reactor}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_jiffies(cpu: int) -> tuple[int, int]:
    """(user + nice + system, steal) clock ticks of one CPU since boot.  Interrupt and softirq
    time is left out: loopback TCP work done for the server itself is counted there."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2], v[7] if len(v) > 7 else 0
    return 0, 0


def process_jiffies(pid: int) -> int:
    return sum(process_user_system(pid))


def process_user_system(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of a process since it started."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0, 0


# ---------------------------------------------------------------------------------------
# servers


class Server:
    """One server process on two fresh loopback ports (text, binary)."""

    def __init__(
        self,
        kind: str,
        logdir: str,
        pin: list[str],
        extra: list[str],
        env: dict | None = None,
        reactor: str = "default",
    ) -> None:
        self.kind = kind
        self.env = env
        #: tinytcp only: twistd's default reactor, --reactor=epoll/asyncio, or asyncio on uvloop
        self.reactor = reactor
        self.logdir = logdir
        self.pin = pin
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.text_port = self.binary_port = 0
        self.log = ""

    def command(self) -> list[str]:
        t, b = self.text_port, self.binary_port
        if self.kind == "tinytcp":
            return [
                *twistd_command(self.reactor),
                "-n",
                "--pidfile=",
                f"--logfile={self.log}",
                "tinytcp",
                "--port",
                f"tcp:{t}:interface=127.0.0.1",
                "--binary-port",
                f"tcp:{b}:interface=127.0.0.1",
                *self.extra,
            ]
        script = "reference_server.py" if self.kind == "reference" else "trivial_server.py"
        cmd = [sys.executable, os.path.join(HERE, script), "--port", str(t), "--binary-port", str(b)]
        return cmd + (["--chat"] if self.kind == "reference" else [])

    def start(self, timeout: float = 30.0) -> Server:
        self.text_port, self.binary_port = free_port(), free_port()
        while self.binary_port == self.text_port:
            self.binary_port = free_port()
        stamp = f"{self.kind}-{self.text_port}"
        self.log = os.path.join(self.logdir, f"{stamp}.log")
        out = open(os.path.join(self.logdir, f"{stamp}.out"), "wb")
        self.proc = subprocess.Popen(
            self.pin + self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.logdir,
            env=self.env,
        )
        out.close()
        deadline = time.monotonic() + timeout
        for port, text in ((self.text_port, True), (self.binary_port, False)):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see {self.logdir}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} not listening after {timeout}s; see {self.logdir}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                        if text:
                            greeting = s.recv(200)
                            if not greeting.startswith(b"WELCOME "):
                                raise RuntimeError(f"{self.kind}: unexpected greeting {greeting!r}")
                    break
                except OSError:
                    time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def port(self, mode: str) -> int:
        return self.text_port if mode == "text" else self.binary_port

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------
# scenarios


class Scenario:
    """One row group of the table: loadgen arguments, the metrics read from its JSON."""

    def __init__(
        self,
        name: str,
        loadgen: list[str],
        mode: str,
        metrics: list[tuple],
        fresh: bool = False,
        ceiling: bool = True,
        per: str | None = None,
        timeout: float = 60.0,
        command: str = "ECHO",
    ) -> None:
        self.name = name
        self.loadgen = loadgen
        self.mode = mode
        #: (key in the result, label, format, higher_is_better, target)
        self.metrics = metrics
        self.fresh = fresh
        self.ceiling = ceiling
        #: key whose count the server CPU time is divided by (requests, MB)
        self.per = per
        self.timeout = timeout
        #: what the requests ask, so that ``--only ECHO`` finds the rows whose name does not say it
        self.command = command


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    d, w = (args.duration, args.warmup)
    timed = ["--duration", str(d), "--warmup", str(w)]
    bound = d + w + 30
    rate = ("req_per_s", "req/s", "{:,.0f}", True)
    cpu_req = ("cpu_us_per_req", "server CPU us/req", "{:.2f}", False, None)
    busy = ("loadgen_cpu_busy", "load generator CPU busy", "{:.0%}", False, None)
    reqresp = [
        (*rate, ">= 1.0x"),
        ("p50_ms", "p50 ms", "{:.3f}", False, None),
        ("p99_ms", "p99 ms", "{:.3f}", False, "<= 1.0x"),
        cpu_req,
        busy,
    ]
    out = (
        [
            Scenario(
                f"pipelined {mode}",
                ["pipelined", "--window", "256", "--size", "32", *timed],
                mode,
                [(*rate, ">= 1.0x"), cpu_req, busy],
                per="requests_verified",
                timeout=bound,
            )
            for mode in ("binary", "text")
        ]
        + [
            Scenario(
                f"request/response {mode}",
                ["reqresp", "--conns", "64", "--size", "32", *timed],
                mode,
                reqresp,
                per="requests_verified",
                timeout=bound,
            )
            for mode in ("binary", "text")
        ]
        + [
            # the other commands: no ceiling, since trivial_server.py answers nothing but ECHO
            Scenario(
                f"{kind} {label} {mode}",
                [loadgen, "--command", command, *shape, "--size", "32", *timed],
                mode,
                metrics,
                ceiling=False,
                per="requests_verified",
                timeout=bound,
                command=label,
            )
            for command, label in (("reverse", "REVERSE"), ("mixed", "mixed"))
            for kind, loadgen, shape, metrics in (
                ("pipelined", "pipelined", ["--window", "256"], [(*rate, ">= 1.0x"), cpu_req, busy]),
                ("request/response", "reqresp", ["--conns", "64"], reqresp),
            )
            for mode in ("binary", "text")
        ]
        + [
            Scenario(
                "bulk binary 1 MiB",
                ["bulk", "--window", "4", "--size", str(MiB), *timed],
                "binary",
                [
                    ("payload_MB_per_s", "MB/s", "{:,.1f}", True, ">= 2.0x"),
                    ("cpu_ms_per_MB", "server CPU ms/MB", "{:.3f}", False, None),
                    busy,
                ],
                per="MB_verified",
                timeout=bound,
            ),
        ]
    )
    for mode in args.idle_modes:
        out.append(
            Scenario(
                f"idle {mode} x{args.idle_conns}",
                ["idle", "--conns", str(args.idle_conns), "--settle", "0.5"],
                mode,
                [
                    ("held", "connections held", "{:,.0f}", True, ">= 15000" if args.idle_conns >= 15000 else None),
                    ("rss_per_conn", "server RSS B/conn", "{:,.0f}", False, "<= 3072"),
                    ("rss_per_conn_after_request", "RSS B/conn after 1 request", "{:,.0f}", False, None),
                    ("all_answered_ms", "all answered ms", "{:,.1f}", False, None),
                    ("open_seconds", "open all s (loadgen)", "{:.2f}", False, None),
                ],
                fresh=True,
                timeout=120.0,
            )
        )
        out[-1].loadgen[-1] = "0.3" if args.quick else "0.5"
    out.append(
        Scenario(
            f"fan-out text x{args.fanout_conns}",
            ["fanout", "--conns", str(args.fanout_conns), "--rounds", "5"],
            "text",
            [("fanout_ms", "SAY to all ms", "{:.1f}", False, None)],
            ceiling=False,
            timeout=90.0,
            command="SAY",
        )
    )
    return [s for s in out if not args.only or any(matches(word, s) for word in args.only)]


def matches(word: str, scenario: Scenario) -> bool:
    """``--only``: ``word`` is in the scenario's name or command, in any case."""
    return word.lower() in f"{scenario.name} {scenario.command}".lower()


def run_loadgen(scenario: Scenario, server: Server, pin: list[str]) -> dict:
    cmd = pin + [
        sys.executable,
        LOADGEN,
        *scenario.loadgen,
        "--mode",
        scenario.mode,
        "--port",
        str(server.port(scenario.mode)),
        "--server-pid",
        str(server.pid),
        "--timeout",
        str(scenario.timeout),
    ]
    cpu0 = cpu_jiffies(0)
    user0, system0 = process_user_system(server.pid)
    t0 = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=scenario.timeout + 30)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"loadgen killed after {scenario.timeout + 30:.0f}s"}
    wall = time.monotonic() - t0
    user1, system1 = process_user_system(server.pid)
    server_jiffies = user1 - user0 + system1 - system0
    cpu1 = cpu_jiffies(0)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"ok": False, "error": f"loadgen exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    server_cpu = server_jiffies / CLK_TCK
    result["server_cpu_s"] = server_cpu
    busy = (cpu1[0] - cpu0[0]) / CLK_TCK
    result["other_load_cpu0"] = max(0.0, busy - server_cpu) / wall if wall > 0 else 0.0
    result["steal_cpu0"] = (cpu1[1] - cpu0[1]) / CLK_TCK / wall if wall > 0 else 0.0
    if scenario.per == "requests_verified" and result.get("requests_verified"):
        result["cpu_us_per_req"] = server_cpu / result["requests_verified"] * 1e6
        # user time is the Python side (protocol, reactor, dispatch); system time the syscalls
        # and, on loopback, the TCP work of delivering the replies
        result["user_us_per_req"] = (user1 - user0) / CLK_TCK / result["requests_verified"] * 1e6
        result["system_us_per_req"] = (system1 - system0) / CLK_TCK / result["requests_verified"] * 1e6
    if scenario.per == "MB_verified" and result.get("requests_verified"):
        mb = result["requests_verified"] * result.get("size", MiB) / 1e6
        result["cpu_ms_per_MB"] = server_cpu / mb * 1e3
    if "all_answered_s" in result:
        result["all_answered_ms"] = result["all_answered_s"] * 1e3
    return result


def load_rows(results: list[dict]) -> list[tuple[str, str, str]]:
    """(label, median, max) of what else used CPU 0 during ``results``: other programs, and the hypervisor."""
    rows = []
    for key, label in (("other_load_cpu0", "other load on CPU 0"), ("steal_cpu0", "CPU 0 stolen (hypervisor)")):
        load = [r.get(key, 0) for r in results if r.get("ok")]
        if load:
            rows.append((label, f"median {statistics.median(load):.0%}", f"max {max(load):.0%}"))
    return rows


def short(result: dict, scenario: Scenario) -> str:
    if not result.get("ok"):
        return "FAILED " + result.get("error", "?")
    if "skipped" in result:
        return "skipped: " + result["skipped"]
    key, label, fmt = scenario.metrics[0][:3]
    value = result.get(key)
    text = f"{fmt.format(value)} {label}" if isinstance(value, (int, float)) else f"{label} ?"
    if len(scenario.metrics) > 1 and scenario.metrics[1][0] in result:
        k2, l2, f2 = scenario.metrics[1][:3]
        text += f", {f2.format(result[k2])} {l2}"
    return text + (
        f" (other load on CPU 0: {result.get('other_load_cpu0', 0):.0%},"
        f" stolen by the hypervisor: {result.get('steal_cpu0', 0):.0%})"
    )


# ---------------------------------------------------------------------------------------
# the run


def median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if r.get("ok") and isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def verdict(target: str | None, ratio: float | None, value: float | None) -> str:
    if not target:
        return ""
    op, number = target.split()
    if number.endswith("x"):
        subject, limit = ratio, float(number[:-1])
    else:
        subject, limit = value, float(number)
    if subject is None:
        return f"{target} ?"
    met = subject >= limit if op == ">=" else subject <= limit
    return f"{target} {'met' if met else 'MISSED'}"


def table(all_results: dict, chosen: list[Scenario], notes: dict) -> str:
    header = ("scenario", "metric", "tinytcp", "reference", "ratio", "ceiling", "target")
    rows = [header]
    for scenario in chosen:
        per_server = all_results.get(scenario.name, {})
        if scenario.name in notes:
            rows.append((scenario.name, notes[scenario.name], "", "", "", "", ""))
            continue
        first = True
        for key, label, fmt, _higher, target in scenario.metrics:
            values = {s: median_of(per_server.get(s, []), key) for s in SERVERS}
            tiny, ref = values["tinytcp"], values["reference"]
            ratio = tiny / ref if tiny is not None and ref not in (None, 0) else None
            rows.append(
                (
                    scenario.name if first else "",
                    label,
                    fmt.format(tiny) if tiny is not None else "-",
                    fmt.format(ref) if ref is not None else "-",
                    f"{ratio:.2f}x" if ratio is not None else "-",
                    fmt.format(values["ceiling"]) if values["ceiling"] is not None else "-",
                    verdict(target, ratio, tiny),
                )
            )
            first = False
        for label, median, most in load_rows([r for s in SERVERS for r in per_server.get(s, [])]):
            rows.append(("", label, median, most, "", "", ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def help_notes(all_results: dict) -> list[str]:
    """Where the servers' HELP replies, learned by the mixed stream, differ: then the stream
    is not the same bytes for both (tinytcp has gained commands the reference does not list)."""
    notes = []
    for name, per_server in all_results.items():
        learned = {
            kind: next((r["learned"] for r in per_server.get(kind, []) if r.get("learned")), None)
            for kind in ("tinytcp", "reference")
        }
        if None not in learned.values() and learned["tinytcp"] != learned["reference"]:
            sizes = {kind: sum(len(v) for v in replies.values()) for kind, replies in learned.items()}
            notes.append(
                f"{name}: the HELP replies differ ({sizes['tinytcp']} bytes from tinytcp, "
                f"{sizes['reference']} from the reference): {learned['tinytcp']['help'].strip()!r}"
            )
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, 3 rounds, idle in binary mode only")
    parser.add_argument("--repeats", type=int, help="rounds per scenario (at least 3; default 3 quick, 5 full)")
    parser.add_argument("--duration", type=float, help="measured seconds per timed run (0.5 quick, 3 full)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each timed run (0.2 quick, 0.5 full)")
    parser.add_argument("--idle-conns", type=int, help="connections in the idle scenario (10000 quick, 15000 full)")
    parser.add_argument("--fanout-conns", type=int, default=1000)
    parser.add_argument(
        "--only",
        nargs="*",
        help="run only scenarios whose name or command (ECHO, REVERSE, mixed, SAY) contains one of these words, "
        "in any case",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--reactor",
        choices=REACTORS,
        default="default",
        help="the Twisted reactor tinytcp runs on (uvloop: the asyncio reactor on uvloop, "
        "through benchmarks/twistd_uvloop.py); the reference stays on plain asyncio",
    )
    parser.add_argument("--json", help="also write every raw result to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (always kept on failure)")
    parser.add_argument(
        "--tinytcp-commit",
        metavar="REV",
        help="benchmark tinytcp as committed at REV (git archive, on PYTHONPATH) instead of the "
        "installed, possibly edited, working tree",
    )
    args = parser.parse_args()
    args.repeats = max(3, args.repeats or (3 if args.quick else 5))
    args.duration = args.duration or (0.5 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 0.5)
    args.idle_modes = ["binary"] if args.quick else ["binary", "text"]

    soft, hard = raise_fd_limit()
    wanted_idle = args.idle_conns or (10_000 if args.quick else 15_000)
    args.idle_conns = min(wanted_idle, soft - 200)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    pin_server: list[str] = []
    pin_loadgen: list[str] = []
    if not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        pin_server, pin_loadgen = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    logdir = tempfile.mkdtemp(prefix="tinytcp-bench-")
    tinytcp_env = None
    machine = machine_description()
    if args.tinytcp_commit:
        tinytcp_env, machine["tinytcp"] = commit_env(args.tinytcp_commit, logdir)
    machine["reactor"] = reactor_description(args.reactor)
    help_text = command_output([twistd_path(), "tinytcp", "--help"], tinytcp_env)
    tinytcp_extra: list[str] = []
    if "--max-connections" in help_text:
        # the default cap would refuse part of the idle scenario with ERROR BUSY
        tinytcp_extra += ["--max-connections", str(max(args.idle_conns, args.fanout_conns) + 100)]

    print("tinytcp benchmark:", " ".join(sys.argv))
    for key, value in machine.items():
        print(f"  {key}: {value}")
    print(f"  pinning: {'servers on CPU 0, load generator on CPU 1 (taskset)' if pin_server else 'none'}")
    print(
        f"  rounds: {args.repeats}, timed runs {args.warmup}s warm-up + {args.duration}s measured, "
        f"idle {args.idle_conns} connections (asked {wanted_idle}, fd limit {soft}/{hard})"
    )
    if tinytcp_extra:
        print(f"  tinytcp options: {' '.join(tinytcp_extra)}")
    if args.idle_conns < wanted_idle:
        print(f"  note: the fd limit allows only {args.idle_conns} idle connections")
    print(flush=True)

    chosen = scenarios(args)
    results: dict[str, dict[str, list[dict]]] = {}
    notes: dict[str, str] = {}
    long_running: dict[str, Server] = {}
    started: list[Server] = []
    failed = False
    t_start = time.monotonic()

    def new_server(kind: str) -> Server:
        if kind == "tinytcp":
            server = Server(kind, logdir, pin_server, tinytcp_extra, tinytcp_env, args.reactor)
        else:
            server = Server(kind, logdir, pin_server, [])
        started.append(server)
        return server.start()

    try:
        for kind in SERVERS:
            long_running[kind] = new_server(kind)
        for scenario in chosen:
            print(f"== {scenario.name}", flush=True)
            per_server = results.setdefault(scenario.name, {})

            def measure(kind: str, label: str, scenario: Scenario = scenario, per_server: dict = per_server) -> dict:
                nonlocal failed
                if scenario.fresh:
                    server = new_server(kind)
                    time.sleep(0.3)
                else:
                    server = long_running[kind]
                try:
                    result = run_loadgen(scenario, server, pin_loadgen)
                finally:
                    if scenario.fresh:
                        server.stop()
                per_server.setdefault(kind, []).append(result)
                print(f"   {label} {kind:9} {short(result, scenario)}", flush=True)
                if not result.get("ok"):
                    failed = True
                return result

            for round_no in range(1, args.repeats + 1):
                # the ceiling is measured every round, or only in the first with --quick
                with_ceiling = scenario.ceiling and (round_no == 1 or not args.quick)
                for kind in [k for k in SERVERS if with_ceiling or k != "ceiling"]:
                    result = measure(kind, f"round {round_no}")
                    if "skipped" in result:
                        notes[scenario.name] = f"skipped: {kind} {result['skipped']}"
                        break
                if scenario.name in notes:
                    print(f"   {scenario.name}: {notes[scenario.name]}; not measured", flush=True)
                    break
            key, higher = scenario.metrics[0][0], scenario.metrics[0][3]
            if args.quick and scenario.ceiling and not scenario.fresh and higher and scenario.name not in notes:
                # one ceiling sample can be hit by a stall; measure again when it is not above both servers
                for retry in (1, 2):
                    ceiling = median_of(per_server.get("ceiling", []), key)
                    best = max((median_of(per_server.get(k, []), key) or 0) for k in ("tinytcp", "reference"))
                    if ceiling is None or ceiling > best:
                        break
                    measure("ceiling", f"again {retry}")
    except Interrupted as e:
        print(f"\ninterrupted ({e}); stopping servers", file=sys.stderr)
        failed = True
    except Exception:
        failed = True
        raise
    finally:
        for server in started:
            server.stop()

    when = " (first round; again if not above both servers)" if args.quick else ""
    print(
        f"\nmedians of {args.repeats} rounds; ratio = tinytcp / reference; "
        f"ceiling = load generator against trivial_server.py{when}; "
        f"{time.monotonic() - t_start:.0f}s in all\n"
    )
    print(table(results, chosen, notes))
    for note in help_notes(results):
        print(f"note: {note}")
    print(
        "\nhigher is better for req/s, MB/s and connections held; lower for latency, CPU, RSS and time."
        "\nA ceiling well above both servers means the load generator was not the limit."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine,
                    "argv": sys.argv,
                    "args": {k: v for k, v in vars(args).items()},
                    "results": results,
                    "notes": notes,
                },
                f,
                indent=1,
            )
        print(f"raw results: {args.json}")
    if failed or args.keep_logs:
        print(f"server logs: {logdir}")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
