"""The parent of ``--workers N``: spawn the workers, relay their logs, restart them, stop them.

The parent serves no client.  It holds the listening sockets (tinytcp/cluster/listeners.py)
for as long as it runs, so a restarted worker serves the same sockets, and clients that
arrive while a worker restarts wait in the kernel's accept queue instead of being refused.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp.cluster.listeners import Listener
from tinytcp.cluster.worker import ENV, WorkerInfo
from tinytcp.server.service import stop_on_sighup

log = Logger(namespace="tinytcp")

#: restart delays: the first after a crash, the longest, and how long a worker must have run
#: for the next crash to count as new (the delay starts over)
FIRST_DELAY = 0.5
LONGEST_DELAY = 10.0
STABLE_AFTER = 30.0

#: seconds past --shutdown-grace after which a worker that has not exited gets SIGKILL
KILL_MARGIN = 5.0

#: a worker's Python runs twistd this way: the same interpreter, so the same install of tinytcp
TWISTD = "from twisted.scripts.twistd import run; run()"

#: systemd's socket-passing variables are for the parent; a worker's sockets come through ENV
SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def worker_arguments(args: Sequence[str]) -> list[str]:
    """The operator's tinytcp options without ``--workers`` (a worker is one process)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def describe_end(reason: Failure) -> str:
    """How a worker ended, as an operator reads it: ``exit status 1``, ``signal 9 (SIGKILL)``."""
    value = reason.value
    number = getattr(value, "signal", None)
    if number is not None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "?"
        return f"signal {number} ({name})"
    return f"exit status {getattr(value, 'exitCode', '?')}"


class WorkerProcess(ProcessProtocol):
    """One running worker: relays its output one line at a time, tells the supervisor when it ends."""

    def __init__(self, supervisor: Supervisor, index: int, started: float) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = started
        self.pid = 0
        self._partial: dict[int, bytes] = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            self.relay(line)

    def relay(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text:
            log.info("worker {worker} [{pid}] {line}", worker=self.index, pid=self.pid, line=text)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self.relay(rest)
            self._partial[fd] = b""
        self.supervisor.ended(self, reason)


class Supervisor(Service):
    """Runs ``count`` workers on ``listeners`` and keeps them running until it is stopped."""

    #: a daemon's SIGHUP stops it cleanly, like SIGTERM (as TinyService does for one process)
    stop_on_hangup = False

    def __init__(
        self,
        listeners: list[Listener],
        count: int,
        arguments: Sequence[str],
        shutdown_grace: float,
        reactor: Any = None,
        twistd_arguments: Sequence[str] = (),
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.listeners = listeners
        self.count = count
        #: the tinytcp options a worker runs with
        self.arguments = list(arguments)
        self.twistd_arguments = list(twistd_arguments)
        self.shutdown_grace = shutdown_grace
        self.reactor = reactor
        self.workers: dict[int, WorkerProcess] = {}
        self.delays: dict[int, float] = {}
        self.restarts: dict[int, Any] = {}
        self.stopping = False
        self._all_ended: defer.Deferred[None] | None = None

    def command(self) -> list[str]:
        """A worker's command line: twistd in the foreground, no pid file, this plugin."""
        return [sys.executable, "-c", TWISTD, "-n", "--pidfile=", *self.twistd_arguments, "tinytcp", *self.arguments]

    def startService(self) -> None:
        Service.startService(self)
        if self.stop_on_hangup:
            stop_on_sighup(self.reactor)
        for index in range(1, self.count + 1):
            self.spawn(index)

    def spawn(self, index: int) -> None:
        """Start worker ``index`` (1-based) on its share of every listener."""
        self.restarts.pop(index, None)
        if self.stopping:
            return
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        fds = []
        for target, listener in enumerate(self.listeners, start=3):
            fd, family = listener.fd_for(index - 1)
            child_fds[target] = fd
            fds.append((target, family))
        env = {key: value for key, value in os.environ.items() if key not in SYSTEMD_VARIABLES}
        env[ENV] = WorkerInfo(index, self.count, tuple(fds)).encode()
        worker = WorkerProcess(self, index, self.reactor.seconds())
        self.workers[index] = worker
        self.reactor.spawnProcess(worker, sys.executable, self.command(), env=env, path=os.getcwd(), childFDs=child_fds)
        log.info("worker {worker} [{pid}] started", worker=index, pid=worker.pid)

    def ended(self, worker: WorkerProcess, reason: Failure) -> None:
        """A worker exited: restart it with backoff, unless the supervisor is stopping."""
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        how = describe_end(reason)
        if self.stopping:
            log.info("worker {worker} [{pid}] stopped ({how})", worker=worker.index, pid=worker.pid, how=how)
            if not self.workers and self._all_ended is not None:
                done, self._all_ended = self._all_ended, None
                done.callback(None)
            return
        lived = self.reactor.seconds() - worker.started
        delay = FIRST_DELAY if lived >= STABLE_AFTER else self.delays.get(worker.index, FIRST_DELAY)
        self.delays[worker.index] = min(delay * 2, LONGEST_DELAY)
        log.warn(
            "worker {worker} [{pid}] died ({how}) after {lived:.1f} s; restarting it in {delay:.1f} s",
            worker=worker.index,
            pid=worker.pid,
            how=how,
            lived=lived,
            delay=delay,
        )
        self.restarts[worker.index] = self.reactor.callLater(delay, self.spawn, worker.index)

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening, SIGTERM every worker (each drains: answers, BYE), wait for all to exit.

        A worker still running ``shutdown_grace`` plus KILL_MARGIN seconds later gets SIGKILL.
        """
        Service.stopService(self)
        self.stopping = True
        for call in self.restarts.values():
            if call.active():
                call.cancel()
        self.restarts.clear()
        closed = defer.DeferredList([listener.close() for listener in self.listeners])
        if not self.workers:
            return closed.addCallback(lambda _: None)
        self._all_ended = defer.Deferred()
        log.info("stopping {count} workers", count=len(self.workers))
        self._signal_all("TERM")
        killer = self.reactor.callLater(self.shutdown_grace + KILL_MARGIN, self._kill_all)

        def done(result: Any) -> Any:
            if killer.active():
                killer.cancel()
            return result

        ended = self._all_ended
        ended.addBoth(done)
        return defer.gatherResults([closed, ended]).addCallback(lambda _: None)

    def _signal_all(self, name: str) -> None:
        for worker in list(self.workers.values()):
            try:
                worker.transport.signalProcess(name)  # type: ignore[union-attr]
            except ProcessExitedAlready:
                pass

    def _kill_all(self) -> None:
        for worker in self.workers.values():
            log.warn("worker {worker} [{pid}] still running: SIGKILL", worker=worker.index, pid=worker.pid)
        self._signal_all("KILL")
