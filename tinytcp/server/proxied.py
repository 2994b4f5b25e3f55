"""Listeners behind a load balancer that sends the PROXY protocol header (``haproxy:`` endpoints).

Twisted's ``haproxy:`` endpoint connects the wrapped protocol as soon as TCP connects and
only later reads the header, so tinytcp would greet the client, check protected mode and
log the balancer's address rather than the client's.  Here the wrapped protocol is
connected once the header has named the client: WELCOME, protected mode, the login limits
per address and the logs all see the client's own address.  A connection that sends no
valid header within HEADER_TIMEOUT seconds is aborted (it never reaches a tinytcp limit).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from zope.interface import directlyProvides, providedBy

#: seconds a balancer's connection may take to send its PROXY header
HEADER_TIMEOUT = 10.0


class HeaderFirst(HAProxyProtocolWrapper):
    """Reads the PROXY header, then connects tinytcp's protocol with the client's address."""

    timer: Any = None
    started = False

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.timer = self.factory.clock.callLater(HEADER_TIMEOUT, transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self.started:
            self.wrappedProtocol.dataReceived(data)
            return
        parser = self._parser
        if parser is None:
            if len(data) >= 16 and data[:12] == V2Parser.PREFIX and data[12] & 0xF0 == 0x20:
                self._parser = parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                self._parser = parser = V1Parser()
            else:
                self.transport.abortConnection()
                return
        try:
            info, remaining = parser.feed(data)
        except InvalidProxyHeader:
            self.transport.abortConnection()
            return
        if info is None:
            return
        self._proxyInfo = info
        self.started = True
        if self.timer.active():
            self.timer.cancel()
        self.wrappedProtocol.makeConnection(self)
        if remaining:
            self.wrappedProtocol.dataReceived(remaining)

    def connectionLost(self, reason: Any) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.started:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)


class HeaderFirstFactory(HAProxyWrappingFactory):
    protocol = HeaderFirst
    noisy = False  # tinytcp logs its listeners itself

    def __init__(self, wrappedFactory: Any, clock: IReactorTime) -> None:
        super().__init__(wrappedFactory)
        self.clock = clock


class ProxiedEndpoint:
    """Listens on ``inner`` for connections that start with a PROXY protocol header."""

    def __init__(self, inner: Any, clock: IReactorTime) -> None:
        self.inner = inner
        self.clock = clock

    def listen(self, factory: Any) -> Any:
        return self.inner.listen(HeaderFirstFactory(factory, self.clock))
