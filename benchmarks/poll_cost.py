"""Reactor cost per socket event: Twisted's epoll reactor against tinytcp's.

    python benchmarks/poll_cost.py [--repeats 7]

Runs each reactor's ``doPoll`` over a fake poller that reports 1,000 readable events per poll
for a selectable whose ``doRead`` does nothing, and prints the best per-event time in ns.  It
isolates what the reactor adds around each event (Twisted's ``log.callWithLogger``, tinytcp's
lazy log context), which is what tinytcp's reactor exists to cut.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from select import EPOLLIN

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import epollreactor  # noqa: E402

from tinytcp.server import reactor as tinytcp_reactor  # noqa: E402

EVENTS = 1000
POLLS = 200
FD = 5


class Selectable:
    """A readable connection that costs nothing to read."""

    def fileno(self) -> int:
        return FD

    def doRead(self) -> None:
        return None

    def logPrefix(self) -> str:
        return "Protocol,1,127.0.0.1"


class Poller:
    """Reports the same readable events at every poll."""

    def __init__(self) -> None:
        self.events = [(FD, EPOLLIN)] * EVENTS

    def poll(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        return self.events


def ns_per_event(reactor_class: type, repeats: int) -> float:
    """Best time of ``POLLS`` polls over ``repeats`` tries, per event, in ns."""
    reactor = reactor_class()
    real, reactor._poller = reactor._poller, Poller()
    reactor._selectables[FD] = Selectable()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(POLLS):
            reactor.doPoll(0)
        best = min(best, time.perf_counter() - start)
    del reactor._selectables[FD]
    reactor._poller = real
    real.close()
    return best / POLLS / EVENTS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for name, reactor_class in (
        ("Twisted's epoll", epollreactor.EPollReactor),
        ("tinytcp's", tinytcp_reactor.EPollReactor),
    ):
        print(f"{name:16} {ns_per_event(reactor_class, args.repeats):7.0f} ns per event")


if __name__ == "__main__":
    main()
