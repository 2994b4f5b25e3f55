"""Shared server state: registry and shutdown, on a fake clock."""

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, make_server
from tinytcp.binary import BinaryProtocol
from tinytcp.server import describe_peer
from tinytcp.text import TextProtocol


class ShutdownTests(SynchronousTestCase):
    def test_everyone_gets_bye_and_shutdown_waits_for_them(self) -> None:
        server = make_server()
        text, text_transport = connect(TextProtocol, server)
        binary, binary_transport = connect(BinaryProtocol, server, port=5556)
        text_transport.clear()
        self.assertEqual(server.connections, {text, binary})
        done = server.shutdown()
        self.assertEqual(text_transport.value(), b"BYE\r\n")
        self.assertEqual(binary_transport.value(), b"\x03\x00\x00\x00\x03BYE")
        self.assertTrue(text_transport.disconnecting and binary_transport.disconnecting)
        self.assertNoResult(done)
        text.connectionLost()
        self.assertNoResult(done)
        binary.connectionLost()
        self.successResultOf(done)
        self.assertEqual(server.reactor.getDelayedCalls(), [])

    def test_requests_after_bye_are_not_served(self) -> None:
        server = make_server()
        text, transport = connect(TextProtocol, server)
        server.shutdown()
        transport.clear()
        text.dataReceived(b"ECHO late\n")
        self.assertEqual(transport.value(), b"")

    def test_stragglers_are_aborted_after_the_grace(self) -> None:
        server = make_server(shutdown_grace=5.0)
        text, transport = connect(TextProtocol, server)
        aborted = []
        transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        done = server.shutdown()
        server.reactor.advance(4.9)
        self.assertEqual(aborted, [])
        server.reactor.advance(0.2)
        self.assertEqual(aborted, [True])
        text.connectionLost()
        self.successResultOf(done)

    def test_shutdown_with_no_connections(self) -> None:
        self.successResultOf(make_server().shutdown())


class PeerTests(SynchronousTestCase):
    def test_peer_descriptions(self) -> None:
        from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

        self.assertEqual(describe_peer(IPv4Address("TCP", "127.0.0.1", 80)), "127.0.0.1:80")
        self.assertEqual(describe_peer(IPv6Address("TCP", "::1", 80)), "[::1]:80")
        self.assertEqual(describe_peer(UNIXAddress(b"/tmp/s")), "unix:/tmp/s")
