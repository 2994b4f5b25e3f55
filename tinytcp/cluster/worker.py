"""The worker's side of ``--workers``: adopt the listening sockets the parent passed, never bind.

The supervisor (tinytcp/cluster/supervisor.py) starts each worker as the same
``twistd -n tinytcp`` with the operator's options, plus one environment variable,
:data:`ENV`, that says which worker it is and which inherited descriptor serves which
listener, in the order tinytcp.server.service.make_service builds them (text ports, binary
ports, web ports).  A worker stops, draining its clients as on SIGTERM, when its stdin (a pipe
from the parent) closes: a parent killed with SIGKILL leaves no orphan serving on.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import endpoints, main
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger(namespace="tinytcp")

#: the environment variable that makes ``twistd tinytcp`` a worker
ENV = "TINYTCP_WORKER"

FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


@dataclass(frozen=True)
class WorkerInfo:
    """Which worker this process is (1-based), of how many, and its inherited listeners."""

    index: int
    count: int
    #: (descriptor, address family name) per listener, in make_service's order
    fds: tuple[tuple[int, str], ...]

    def encode(self) -> str:
        """The value of :data:`ENV` for this worker."""
        return json.dumps({"index": self.index, "count": self.count, "fds": [list(fd) for fd in self.fds]})


def from_environ(environ: Mapping[str, str] | None = None) -> WorkerInfo | None:
    """This process's WorkerInfo, or None when it is not a worker."""
    value = (os.environ if environ is None else environ).get(ENV)
    if not value:
        return None
    data = json.loads(value)
    return WorkerInfo(int(data["index"]), int(data["count"]), tuple((int(fd), str(f)) for fd, f in data["fds"]))


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """Listen on an inherited socket, wrapping each connection in TLS when the listener is ssl:/tls:.

    The TLS layer is the one Twisted's own ssl: and tls: listeners put over TCP, so the
    protocols see the same transport as in a single process.
    """

    def __init__(self, reactor: Any, fd: int, family: str, wrap: Callable[[Factory], Factory] | None = None) -> None:
        self.reactor = reactor
        self.fd = fd
        self.family = FAMILIES[family]
        self.wrap = wrap

    def listen(self, factory: Factory) -> Any:
        adopted = endpoints.AdoptedStreamServerEndpoint(self.reactor, self.fd, self.family)
        return adopted.listen(self.wrap(factory) if self.wrap is not None else factory)


def tls_wrapper(reactor: Any, description: str) -> Callable[[Factory], Factory] | None:
    """For ssl: and tls: descriptions, what turns a factory into the TLS factory Twisted would use."""
    kind = description.split(":", 1)[0].lower()
    if kind not in ("ssl", "tls"):
        return None
    parsed = endpoints.serverFromString(reactor, description)
    context = getattr(parsed, "_sslContextFactory", None)
    if context is not None:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return lambda factory: TLSMemoryBIOFactory(context, False, factory)
    wrapper: Callable[[Factory], Factory] | None = getattr(parsed, "_wrapperFactory", None)
    if wrapper is None:
        raise ValueError(f"cannot adopt {kind}: listeners of this Twisted")
    return wrapper


def adopted_endpoints(info: WorkerInfo, reactor: Any) -> Callable[[str, str], IStreamServerEndpoint]:
    """make_service's endpoint_for for a worker: each call takes the next inherited descriptor."""
    remaining = list(info.fds)

    def endpoint_for(mode: str, description: str) -> IStreamServerEndpoint:
        fd, family = remaining.pop(0)
        return AdoptedEndpoint(reactor, fd, family, tls_wrapper(reactor, description))

    return endpoint_for


@implementer(IReadDescriptor)
class ParentWatch:
    """Stop this worker cleanly when its stdin, a pipe the parent holds open, reaches end of file."""

    def __init__(self, reactor: Any, fd: int = 0) -> None:
        self.reactor = reactor
        self.fd = fd
        self.stopping = False

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self.reactor.addReader(self)
        # the reactor drops every reader as it stops: that is not the parent going away
        self.reactor.addSystemEventTrigger("before", "shutdown", setattr, self, "stopping", True)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "parent-watch"

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        return None if data else main.CONNECTION_DONE

    def connectionLost(self, reason: Failure) -> None:
        """End of file (or a hang-up, which epoll reports without a read): the parent is gone."""
        self.reactor.removeReader(self)
        if self.stopping:
            return
        self.stopping = True
        log.warn("the supervisor is gone (stdin closed): stopping")
        self.reactor.stop()
