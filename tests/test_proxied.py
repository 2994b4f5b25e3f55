"""haproxy: listeners: tinytcp's protocol starts once the PROXY header has named the client."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import make_server
from tinytcp.server.proxied import HEADER_TIMEOUT, HeaderFirstFactory
from tinytcp.server.service import ConnectionFactory
from tinytcp.server.text import TextProtocol

V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 41000 40000\r\n"
#: a v2 LOCAL header: what HAProxy's health checks send
V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


class HeaderFirstTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()

    def connect(self, **settings: object) -> tuple[object, StringTransport]:
        server = make_server(**settings)
        factory = HeaderFirstFactory(ConnectionFactory(server, TextProtocol), self.clock)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        protocol.makeConnection(transport)
        self.server = server
        return protocol, transport

    def test_nothing_is_said_before_the_header(self) -> None:
        protocol, transport = self.connect(protected_mode=False)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(self.server.connections), 0)

    def test_the_client_address_comes_from_the_header_even_split_across_reads(self) -> None:
        protocol, transport = self.connect(protected_mode=False)
        protocol.dataReceived(V1[:8])  # enough to tell the version, then a byte at a time
        for i in range(8, len(V1) - 1):
            protocol.dataReceived(V1[i : i + 1])
        protocol.dataReceived(V1[-1:] + b"ECHO hi\n")
        self.assertTrue(transport.value().startswith(b"WELCOME"))
        self.assertTrue(transport.value().endswith(b"ECHO hi\r\n"))
        (connection,) = self.server.connections
        self.assertEqual(connection.peer, "203.0.113.7:41000")

    def test_protected_mode_judges_the_client_not_the_balancer(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(V1)
        self.assertTrue(transport.value().startswith(b"ERROR DENIED"))

    def test_a_health_check_without_an_address_is_the_balancer_itself(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(V2_LOCAL)
        self.assertTrue(transport.value().startswith(b"WELCOME"))
        (connection,) = self.server.connections
        self.assertEqual(connection.peer, "127.0.0.1:5555")

    def test_no_header_is_aborted(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"ECHO hi, no header\n")
        self.assertTrue(transport.disconnected)  # StringTransport.abortConnection sets it
        self.assertEqual(transport.value(), b"")

    def test_a_header_that_never_comes_is_aborted_after_the_timeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(V1[:10])
        self.clock.advance(HEADER_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnected)  # StringTransport.abortConnection sets it
