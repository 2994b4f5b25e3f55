"""Experiment: twistd whose reactor calls event handlers without ``log.callWithLogger``.

    python benchmarks/twistd_nolog.py --reactor=epoll -n tinytcp [options]
    python benchmarks/twistd_nolog.py --uvloop -n tinytcp [options]   # asyncio reactor on uvloop

Twisted's epoll and asyncio reactors wrap every read or write event in
``twisted.python.log.callWithLogger(selectable, handler, ...)``, which asks the selectable for
its ``logPrefix()`` and pushes a copy of the legacy log context (``{"system": prefix}``) for the
duration of the call: about ten Python calls and three dict copies per event, around 2.5 us
on the benchmark machine, as much as all of tinytcp's own code for a one-request read.  This
launcher replaces that wrapper, in ``twisted.internet.epollreactor`` and
``twisted.internet.asyncioreactor`` only, by a plain call that still logs an exception from a
handler with the selectable's prefix, then runs twistd (on uvloop with ``--uvloop``, through
``twistd_uvloop.py``).  What changes for a running server: messages logged through the
legacy ``twisted.python.log`` API during an event carry ``[-]`` instead of the connection's
prefix; ``twisted.logger`` events, which tinytcp uses, are unaffected.

It measures what Twisted's per-event dispatch costs (``run.py --reactor epoll-nolog``,
``reactors.py --reactors epoll epoll-nolog``); it is not how tinytcp runs.
"""

from __future__ import annotations

import sys

from twisted.internet import asyncioreactor, epollreactor
from twisted.python import log


def call_without_logger(logger, func, *args, **kw):  # type: ignore[no-untyped-def]
    """``callWithLogger`` without the log context: call, and log what escapes."""
    try:
        return func(*args, **kw)
    except KeyboardInterrupt:
        raise
    except BaseException:
        try:
            prefix = logger.logPrefix()
        except BaseException:
            prefix = "(buggy logPrefix method)"
        log.err(system=prefix)


class _LogModule:
    """``twisted.python.log`` as epollreactor sees it, with ``callWithLogger`` replaced."""

    callWithLogger = staticmethod(call_without_logger)

    def __getattr__(self, name: str) -> object:
        return getattr(log, name)


def main() -> None:
    epollreactor.log = _LogModule()  # type: ignore[assignment]
    asyncioreactor.callWithLogger = call_without_logger  # type: ignore[assignment]
    print("twistd_nolog: epoll and asyncio reactors call handlers without callWithLogger", file=sys.stderr, flush=True)
    args = sys.argv[1:]
    if "--uvloop" in args:
        args.remove("--uvloop")
        import twistd_uvloop

        sys.argv = [sys.argv[0], *args]
        twistd_uvloop.main()
        return
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *args]
    run()


if __name__ == "__main__":
    main()
