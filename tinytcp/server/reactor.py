"""tinytcp's reactor: Twisted's epoll reactor without the legacy log context around each event.

Twisted's epoll reactor runs every socket event inside ``log.callWithLogger``, which asks the
connection for its ``logPrefix()`` and pushes a copy of the legacy ``twisted.python.log``
context for the duration of the call: about ten Python calls and three dict copies, some
2.5 us per event on the benchmark machine, as much as all of tinytcp's own code for a
one-request read (docs/performance.md).  This reactor calls the event handler directly and
still logs, with the connection's prefix, whatever escapes it.

What changes: messages logged through the legacy ``twisted.python.log.msg`` API while an
event is handled carry ``[-]`` instead of the connection's prefix as their ``system``.
``twisted.logger`` events, which tinytcp and current Twisted use, are unaffected.

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
from twisted.python import log


class EPollReactor(epollreactor.EPollReactor):
    """``EPollReactor`` whose poll loop calls ``_doReadOrWrite`` without ``log.callWithLogger``."""

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
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
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

    doIteration = doPoll


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
