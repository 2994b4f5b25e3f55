"""Run Twisted's own reactor, TCP and TLS tests on Twisted's epoll reactor and on tinytcp's.

    python .ci/twisted_suite.py              # both runs, then the comparison (exit 1 on a regression)
    python .ci/twisted_suite.py --only tinytcp test.module ...   # one run, chosen modules

tinytcp's reactor (``tinytcp.server.reactor``) and TCP transport (``tinytcp.server.transport``)
subclass Twisted's and lean on its internals, so Twisted's own tests are the best check that
they still behave as Twisted's do.  Each run is a child process that installs its reactor as
the global one (the tests that use ``twisted.internet.reactor``), points ``ReactorBuilder``
(the tests that build a reactor per test) at that reactor class only and, for tinytcp, makes
every TCP listening port hand out ``WriteThroughTransport``, as tinytcp's listeners do.  Both
runs use the same test ids (both reactor classes are called ``EPollReactor``), so the script
compares the ids that fail or error and fails if tinytcp's run has any the Twisted run does not.
There is no exception list: tinytcp's reactor keeps Twisted's legacy log context (lazily), so
even the ``test_logPrefix`` tests pass on it.

On the project's 2-core machine a run of the default modules takes 27-28 s on Twisted 26.10
(644 tests) and about 60 s on 24.7 (610), idle; 60-115 s each while other jobs share the CPUs.

Twisted's test modules ship with Twisted; they need the ``tls`` extra and pyhamcrest and
hypothesis (all in tinytcp's ``test`` extra).  A module that does not import fails the job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

#: the modules run by default: reactor core, TCP and TLS transports, policies (wrappers
#: around transports), and the reactor internals tinytcp's reactor overrides (the poll loop)
MODULES = [
    "twisted.internet.test.test_tcp",
    "twisted.internet.test.test_tls",
    "twisted.internet.test.test_core",
    "twisted.internet.test.test_abstract",
    "twisted.internet.test.test_epollreactor",
    "twisted.internet.test.test_fdset",
    "twisted.internet.test.test_main",
    "twisted.internet.test.test_newtls",
    "twisted.internet.test.test_filedescriptor",
    "twisted.internet.test.test_posixbase",
    "twisted.internet.test.test_base",
    "twisted.internet.test.test_time",
    "twisted.internet.test.test_threads",
    "twisted.internet.test.test_unix",
    "twisted.internet.test.test_socket",
    "twisted.internet.test.test_sigchld",
    "twisted.test.test_tcp",
    "twisted.test.test_tcp_internals",
    "twisted.test.test_ssl",
    "twisted.test.test_sslverify",
    "twisted.test.test_policies",
    "twisted.test.test_internet",
    "twisted.test.test_loopback",
]

#: how each run is set up: the global reactor's install function and the ReactorBuilder class
RUNS = {
    "twisted": ("twisted.internet.epollreactor", "twisted.internet.epollreactor.EPollReactor"),
    "tinytcp": ("tinytcp.server.reactor", "tinytcp.server.reactor.EPollReactor"),
}


def child(run: str, modules: list[str], out: str) -> None:
    """Install ``run``'s reactor and transport, run the tests and write the failing ids to ``out``."""
    install_module, reactor_class = RUNS[run]
    __import__(install_module, fromlist=["install"]).install()
    from twisted.internet.test.reactormixins import ReactorBuilder
    from twisted.trial import reporter, runner

    ReactorBuilder._reactors = [reactor_class]
    if run == "tinytcp":
        from twisted.internet import tcp

        from tinytcp.server.transport import WriteThroughTransport

        tcp.Port.transport = WriteThroughTransport
    suite = runner.TestLoader().loadByNames(modules, recurse=True)
    workdir = os.path.join(os.path.dirname(os.path.abspath(out)), f"_trial_{run}")  # beside the logs
    trial = runner.TrialRunner(reporter.Reporter, stream=sys.stdout, workingDirectory=workdir)
    result = trial.run(suite)
    failed = {
        "failures": sorted(test.id() for test, _ in result.failures),
        "errors": sorted(test.id() for test, _ in result.errors),
        "unexpected_successes": sorted(test.id() for test, _ in result.unexpectedSuccesses),
        "run": result.testsRun,
        "successes": result.successes,
        "skips": len(result.skips),
    }
    with open(out, "w") as f:
        json.dump(failed, f)


def run_child(run: str, modules: list[str], logdir: str) -> tuple[dict[str, object], float]:
    """Run one configuration in its own process (a reactor is installed once per process)."""
    out = os.path.join(logdir, f"{run}.json")
    log = os.path.join(logdir, f"{run}.log")
    start = time.monotonic()
    with open(log, "w") as f:
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", run, "--out", out, *modules],
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        )
    elapsed = time.monotonic() - start
    if not os.path.exists(out):
        sys.exit(f"the {run} run wrote no results; see {log}")
    with open(out) as f:
        return json.load(f), elapsed


def bad(result: dict[str, object]) -> set[str]:
    """Every test id that did not pass as it should."""
    return {test for key in ("failures", "errors", "unexpected_successes") for test in result[key]}  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=MODULES, help="test modules (default: the list in this script)")
    parser.add_argument("--only", choices=sorted(RUNS), help="one run, no comparison")
    parser.add_argument("--child", choices=sorted(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--logs", help="folder for each run's trial output (default: a new temporary one)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.modules, args.out)
        return 0
    logdir = args.logs or tempfile.mkdtemp(prefix="twisted-suite-")
    os.makedirs(logdir, exist_ok=True)
    results = {}
    for run in [args.only] if args.only else list(RUNS):
        result, elapsed = run_child(run, args.modules, logdir)
        results[run] = result
        print(
            f"{run:8} {result['run']} tests: {result['successes']} passed, {result['skips']} skipped, "
            f"{len(result['failures'])} failed, {len(result['errors'])} errors, "  # type: ignore[arg-type]
            f"{len(result['unexpected_successes'])} unexpected successes in {elapsed:.0f} s"  # type: ignore[arg-type]
        )
        for test in sorted(bad(result)):
            print(f"         not passed: {test}")
    print(f"trial output: {logdir}")
    unloaded = sorted(set(args.modules) & set().union(*(bad(result) for result in results.values())))
    for module in unloaded:
        print(f"NOT RUN: {module} did not import (Twisted's test dependencies: pyhamcrest, hypothesis)")
    if args.only or unloaded:
        return 1 if unloaded else 0
    regressions = sorted(bad(results["tinytcp"]) - bad(results["twisted"]))
    for test in regressions:
        print(f"REGRESSION: fails on tinytcp's reactor/transport only: {test}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
