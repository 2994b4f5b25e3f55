"""Shared server behaviour on a fake clock: registry, limits, backpressure, shutdown."""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import INegotiated
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from tests.helpers import connect, make_server
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.state import QUIET, describe_peer
from tinytcp.server.text import TextProtocol


def messages(events: list[dict]) -> list[str]:
    return [e["log_format"].format(**e) for e in events]


class ShutdownTests(SynchronousTestCase):
    def test_everyone_gets_bye_and_shutdown_waits_for_them(self) -> None:
        server = make_server()
        text, text_transport = connect(TextProtocol, server)
        binary, binary_transport = connect(BinaryProtocol, server, port=5556)
        text_transport.clear()
        self.assertEqual(server.connections, {text, binary})
        done = server.shutdown()
        server.reactor.advance(QUIET)
        self.assertEqual(text_transport.value(), b"BYE\r\n")
        self.assertEqual(binary_transport.value(), b"\x03\x00\x00\x00\x03BYE")
        self.assertTrue(text_transport.disconnecting and binary_transport.disconnecting)
        self.assertNoResult(done)
        text.connectionLost()
        self.assertNoResult(done)
        binary.connectionLost()
        self.successResultOf(done)
        self.assertEqual(server.reactor.getDelayedCalls(), [])

    def test_requests_still_arriving_are_answered_before_bye(self) -> None:
        server = make_server()
        text, transport = connect(TextProtocol, server)
        transport.clear()
        server.shutdown()
        text.dataReceived(b"ECHO 1\n")
        server.reactor.advance(QUIET)
        text.dataReceived(b"ECHO 2\nECHO 3\n")
        server.reactor.advance(QUIET)
        self.assertEqual(transport.value(), b"ECHO 1\r\nECHO 2\r\nECHO 3\r\n")
        server.reactor.advance(QUIET)
        self.assertEqual(transport.value(), b"ECHO 1\r\nECHO 2\r\nECHO 3\r\nBYE\r\n")
        text.dataReceived(b"ECHO late\n")
        self.assertEqual(transport.value(), b"ECHO 1\r\nECHO 2\r\nECHO 3\r\nBYE\r\n")

    def test_shutdown_keeps_backpressure_on_a_client_that_does_not_read(self) -> None:
        server = make_server(shutdown_grace=5.0)
        text, transport = connect(TextProtocol, server)
        text.pauseProducing()
        server.shutdown()
        self.assertEqual(transport.producerState, "paused")
        server.reactor.advance(1)
        self.assertFalse(transport.value().endswith(b"BYE\r\n"))  # it may still read its replies
        text.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        server.reactor.advance(QUIET)
        server.reactor.advance(QUIET)
        self.assertTrue(transport.value().endswith(b"BYE\r\n"))
        self.assertTrue(transport.disconnecting)

    def test_new_connections_during_shutdown_are_refused(self) -> None:
        server = make_server()
        server.shutdown()
        _, transport = connect(TextProtocol, server)
        self.assertEqual(transport.value(), b"ERROR BUSY\r\n")

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


class ConnectionLimitTests(SynchronousTestCase):
    def test_past_the_limit_gets_busy_and_the_others_are_untouched(self) -> None:
        server = make_server(max_connections=2)
        first, first_transport = connect(TextProtocol, server, port=1)
        connect(BinaryProtocol, server, port=2)
        with capturedLogs() as events:
            busy_text, text_transport = connect(TextProtocol, server, port=3)
            busy_binary, binary_transport = connect(BinaryProtocol, server, port=4)
        self.assertEqual(text_transport.value(), b"ERROR BUSY\r\n")
        self.assertEqual(binary_transport.value(), b"\xff\x00\x00\x00\x04BUSY")
        self.assertTrue(text_transport.disconnecting and binary_transport.disconnecting)
        self.assertIn("127.0.0.1:3: closing: refused, 2 connections open (--max-connections)", messages(events))
        busy_text.dataReceived(b"ECHO sneaky\n")
        busy_text.connectionLost()
        busy_binary.connectionLost()
        self.assertEqual(len(server.connections), 2)
        first_transport.clear()
        first.dataReceived(b"ECHO fine\n")
        self.assertEqual(first_transport.value(), b"ECHO fine\r\n")
        first.connectionLost()
        _, transport = connect(TextProtocol, server, port=5)
        self.assertTrue(transport.value().startswith(b"WELCOME"))


class IdleTimeoutTests(SynchronousTestCase):
    def test_silent_text_client_is_told_and_closed(self) -> None:
        server = make_server(idle_timeout=300)
        text, transport = connect(TextProtocol, server)
        transport.clear()
        server.reactor.advance(299)
        text.dataReceived(b"ECHO x\n")
        server.reactor.advance(299)
        self.assertFalse(transport.disconnecting)
        with capturedLogs() as events:
            server.reactor.advance(1)
        self.assertEqual(transport.value(), b"ECHO x\r\nERROR IDLE_TIMEOUT\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertIn("127.0.0.1:5555: closing: idle for 300s (--idle-timeout)", messages(events))
        text.connectionLost()
        self.assertEqual(server.reactor.getDelayedCalls(), [])

    def test_silent_binary_client_gets_an_error_frame(self) -> None:
        server = make_server(idle_timeout=10)
        _, transport = connect(BinaryProtocol, server)
        server.reactor.advance(10)
        self.assertEqual(transport.value(), b"\xff\x00\x00\x00\x0cIDLE_TIMEOUT")
        self.assertTrue(transport.disconnecting)

    def test_a_draining_write_buffer_counts_as_activity(self) -> None:
        server = make_server(idle_timeout=10)
        text, transport = connect(TextProtocol, server)
        server.reactor.advance(9)
        text.pauseProducing()
        text.resumeProducing()
        server.reactor.advance(9)
        self.assertFalse(transport.disconnecting)

    def test_reads_move_no_timer_until_it_fires(self) -> None:
        server = make_server(idle_timeout=10)
        text, transport = connect(TextProtocol, server)
        (timer,) = server.reactor.getDelayedCalls()
        for _ in range(5):
            server.reactor.advance(1)
            text.dataReceived(b"ECHO x\n")
        self.assertEqual(server.reactor.getDelayedCalls(), [timer])
        self.assertEqual(timer.getTime(), 10)
        server.reactor.advance(5)  # t=10: active at t=5, so it waits until t=15
        self.assertFalse(transport.disconnecting)
        server.reactor.advance(4.5)
        self.assertFalse(transport.disconnecting)
        server.reactor.advance(0.5)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().endswith(b"ERROR IDLE_TIMEOUT\r\n"))

    def test_zero_turns_it_off(self) -> None:
        server = make_server(idle_timeout=0)
        _, transport = connect(TextProtocol, server)
        self.assertEqual(server.reactor.getDelayedCalls(), [])
        server.reactor.advance(10**6)
        self.assertFalse(transport.disconnecting)

    def test_closed_connections_leave_no_timer(self) -> None:
        server = make_server(idle_timeout=10)
        text, _ = connect(TextProtocol, server)
        binary, _ = connect(BinaryProtocol, server)
        text.dataReceived(b"ECHO a\nQUIT\n")
        binary.dataReceived(encode_frame(1, b"partial")[:4])
        text.connectionLost()
        binary.connectionLost()
        self.assertEqual(server.reactor.getDelayedCalls(), [])
        self.assertEqual(server.connections, set())


class BackpressureTests(SynchronousTestCase):
    def test_protocols_register_as_streaming_producers(self) -> None:
        server = make_server()
        for protocol_class in (TextProtocol, BinaryProtocol):
            protocol, transport = connect(protocol_class, server)
            self.assertIs(transport.producer, protocol)
            self.assertTrue(transport.streaming)
            protocol.pauseProducing()
            self.assertEqual(transport.producerState, "paused")
            protocol.resumeProducing()
            self.assertEqual(transport.producerState, "producing")

    def test_over_tls_backpressure_starts_after_the_handshake(self) -> None:
        # the TLS layer pauses its producer while it holds pre-handshake writes (WELCOME);
        # a producer registered before the handshake would stop it from reading the handshake
        protocol = TextProtocol(make_server())
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 7))
        directlyProvides(transport, INegotiated)
        protocol.makeConnection(transport)
        self.assertIsNone(transport.producer)
        protocol.handshakeCompleted()
        self.assertIs(transport.producer, protocol)

    def test_closing_unregisters(self) -> None:
        server = make_server()
        text, transport = connect(TextProtocol, server)
        text.dataReceived(b"QUIT\n")
        self.assertIsNone(transport.producer)


class PeerTests(SynchronousTestCase):
    def test_peer_descriptions(self) -> None:
        self.assertEqual(describe_peer(IPv4Address("TCP", "127.0.0.1", 80)), "127.0.0.1:80")
        self.assertEqual(describe_peer(IPv6Address("TCP", "::1", 80)), "[::1]:80")
        self.assertEqual(describe_peer(UNIXAddress(b"/tmp/s")), "unix:/tmp/s")
