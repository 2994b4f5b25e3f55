"""tinytcp's reactor: Twisted's epoll reactor with a lazy legacy log context around each event.

Twisted's epoll reactor runs every socket event inside ``log.callWithLogger``, which asks the
connection for its ``logPrefix()`` and pushes a copy of the legacy ``twisted.python.log``
context for the duration of the call: about ten Python calls and three dict copies, some
2.5 us per event on the benchmark machine, as much as all of tinytcp's own code for a
one-request read (docs/performance.md).  This reactor calls the event handler directly and
logs, with the connection's prefix, whatever escapes it.

The legacy context stays right, at the price of one attribute store and a list push and pop
per event: each poll pushes one ``_LogFrame`` on ``twisted.python.context``'s stack, pointed at
the connection being served, and the ``logPrefix()`` and the dict a legacy
``twisted.python.log.msg`` wants are built only when something reads them.  So a legacy
message logged while a connection is served carries that connection's prefix as its
``system``, as under Twisted's reactor (Twisted's ``test_logPrefix`` tests check this).

``twistd tinytcp`` installs it unless twistd's ``--reactor`` already chose a reactor; it is
also the reactor plugin ``twistd --reactor=tinytcp``.
"""

from __future__ import annotations

import errno
import sys
from select import EPOLLIN
from typing import Any

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.python import context, log
from twisted.python.log import ILogContext


class _LogFrame:
    """The legacy log context while one poll's events are handled: ``{"system": logPrefix()}``
    of the selectable being served, computed only when asked for.

    It is an entry of ``twisted.python.context``'s stack, which reads entries with ``[key]``
    (a ``KeyError`` sends the lookup further down).  Every read returns a new dict, so one
    frame serves every event of a poll and nobody keeps a view that later changes.
    """

    __slots__ = ("outer", "selectable")

    def __init__(self, outer: dict[str, Any]) -> None:
        self.outer = outer  #: the log context outside the poll (usually {"system": "-"})
        self.selectable: Any = None

    def log_context(self) -> dict[str, Any]:
        """What ``log.callWithLogger`` would have set: the outer log context plus the prefix."""
        logged = dict(self.outer)
        try:
            logged["system"] = self.selectable.logPrefix()
        except Exception:
            logged["system"] = "(buggy logPrefix method)"
        return logged

    def __getitem__(self, key: Any) -> Any:
        if key is ILogContext:
            return self.log_context()
        raise KeyError(key)


class EPollReactor(epollreactor.EPollReactor):
    """``EPollReactor`` whose poll loop calls ``_doReadOrWrite`` without ``log.callWithLogger``
    (a ``_LogFrame`` gives the same legacy log context, lazily)."""

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1  # wait indefinitely
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        handle = self._doReadOrWrite
        selectables = self._selectables
        stack = _context_stack()
        frame = _LogFrame(context.get(ILogContext) or {})
        push, pop = stack.append, stack.pop
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            frame.selectable = selectable
            push(frame)
            try:
                if event == EPOLLIN:
                    # the common event, as _doReadOrWrite handles it, without its other branches
                    in_read = False
                    why: Any
                    try:
                        if selectable.fileno() == -1:
                            why = _NO_FILEDESC
                        else:
                            why = selectable.doRead()
                            in_read = True
                    except BaseException:
                        why = sys.exc_info()[1]
                        log.err()
                    if why:
                        self._disconnectSelectable(selectable, why, in_read)
                else:
                    handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:  # what callWithLogger did: log it, go on with the next event
                _log_escaped(selectable)
            finally:
                pop()

    doIteration = doPoll


def _context_stack() -> list[Any]:
    """This thread's stack of ``twisted.python.context`` entries."""
    tracker = context.theContextTracker
    current = getattr(tracker, "currentContext", None)  # the threaded tracker, Twisted's default
    return (current() if current is not None else tracker).contexts  # type: ignore[no-any-return]


def _log_escaped(selectable: Any) -> None:
    """Log the exception being handled with the selectable's prefix, as callWithLogger does."""
    try:
        prefix = selectable.logPrefix()
    except BaseException:
        prefix = "(buggy logPrefix method)"
    log.err(system=prefix)


def install() -> EPollReactor:
    """Install tinytcp's reactor as the global one (before anything imports twisted.internet.reactor)."""
    reactor = EPollReactor()
    installReactor(reactor)
    return reactor
