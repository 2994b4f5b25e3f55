"""The write path of tinytcp's TCP transport, on a real socket pair and a fake reactor."""

from __future__ import annotations

import os
import socket

import twisted.test
from twisted.internet import defer, main, reactor, ssl
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import connect, make_server
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.service import make_service
from tinytcp.server.state import Settings
from tinytcp.server.transport import WriteThroughTransport


class Producer:
    """A streaming producer that records what the transport asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class WriteThroughTransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ours, self.peer = socket.socketpair()
        # small kernel buffers, so that the socket soon stops taking what is written
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.ours.setblocking(False)
        self.peer.settimeout(5)
        self.reactor = MemoryReactorClock()
        self.protocol = Protocol()
        self.transport = WriteThroughTransport(self.ours, self.protocol, ("127.0.0.1", 7), None, 1, self.reactor)
        self.protocol.makeConnection(self.transport)

    def tearDown(self) -> None:
        self.ours.close()
        self.peer.close()

    def read(self, size: int) -> bytes:
        got = b""
        while len(got) < size:
            chunk = self.peer.recv(size - len(got))
            if not chunk:
                break
            got += chunk
        return got

    def drain(self, size: int) -> bytes:
        """Read ``size`` bytes on the peer, letting the transport write as the socket frees up."""
        got = b""
        for _ in range(100_000):
            if not self.transport._tempDataLen:
                break
            got += self.peer.recv(1 << 20)
            self.transport.doWrite()
        self.assertEqual(self.transport._tempDataLen, 0)
        return got + self.read(size - len(got))

    def test_a_write_with_nothing_queued_is_sent_at_once(self) -> None:
        self.transport.write(b"hello")
        self.assertEqual(self.read(5), b"hello")
        self.assertNotIn(self.transport, self.reactor.getWriters())

    def test_what_the_socket_does_not_take_is_queued_in_order(self) -> None:
        big = bytes(range(256)) * 4096  # 1 MiB, more than the socket takes
        self.transport.write(big)
        self.assertGreater(self.transport._tempDataLen, 0)
        self.assertLess(self.transport._tempDataLen, len(big))
        self.assertIn(self.transport, self.reactor.getWriters())
        # later writes queue behind it, never jump ahead to the socket
        self.transport.write(b"after")
        self.transport.writeSequence([b"and", b"then"])
        self.assertEqual(self.drain(len(big) + 12), big + b"afterandthen")
        self.assertNotIn(self.transport, self.reactor.getWriters())

    def test_the_queue_keeps_the_written_objects_without_joining_them(self) -> None:
        first, second = b"a" * (1 << 20), b"b" * (1 << 20)
        self.transport.writeSequence([first, second])
        queue = self.transport._tempDataBuffer
        self.assertIs(queue[-1], second)
        self.assertIsInstance(queue[0], memoryview)  # the unsent part of ``first``, not a copy
        self.assertIs(queue[0].obj, first)
        self.assertEqual(self.drain(2 << 20), first + second)

    def test_a_full_buffer_pauses_the_producer_and_draining_resumes_it(self) -> None:
        producer = Producer()
        self.transport.registerProducer(producer, True)
        self.transport.write(b"x" * (self.transport.bufferSize * 4))
        self.assertEqual(producer.calls, ["pause"])
        self.drain(self.transport.bufferSize * 4)
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_lose_connection_waits_for_the_queue(self) -> None:
        self.transport.write(b"y" * (1 << 20))
        self.transport.loseConnection()
        got = b""
        result = None
        for _ in range(100_000):
            got += self.peer.recv(1 << 20)
            result = self.transport.doWrite()
            if result is not None:
                break
        self.assertIs(result, main.CONNECTION_DONE)
        self.assertEqual(got + self.read((1 << 20) - len(got)), b"y" * (1 << 20))

    def test_a_dead_peer_is_reported_by_do_write(self) -> None:
        self.transport.write(b"z" * (1 << 20))
        self.assertGreater(self.transport._tempDataLen, 0)
        self.peer.close()
        self.assertIs(self.transport.doWrite(), main.CONNECTION_LOST)

    def test_nothing_reaches_the_socket_after_an_abort(self) -> None:
        self.transport.abortConnection()
        self.transport.write(b"late")
        self.peer.setblocking(False)
        self.assertRaises(BlockingIOError, self.peer.recv, 10)

    def test_only_bytes_are_written(self) -> None:
        self.assertRaises(TypeError, self.transport.write, "text")
        self.assertRaises(TypeError, self.transport.writeSequence, [b"ok", "text"])


class LargeReplyTests(SynchronousTestCase):
    def test_a_large_payload_is_written_as_it_is_behind_its_header(self) -> None:
        protocol, transport = connect(BinaryProtocol, make_server())
        sequences: list[list[bytes]] = []
        transport.writeSequence = sequences.append  # type: ignore[method-assign]
        frame = encode_frame(1, b"p" * 200_000)
        after = encode_frame(1, b"next")
        reads = [frame[i : i + 65536] for i in range(0, len(frame), 65536)]
        reads[-1] += after[:3]
        for read in reads:
            protocol.dataReceived(read)
        self.assertEqual(len(sequences), 1)
        header, payload = sequences[0]
        self.assertEqual(header + payload, frame)
        self.assertEqual(protocol.frames.have, 3)
        protocol.dataReceived(after[3:])
        self.assertEqual(transport.value(), after)


class ListenerTests(TestCase):
    def test_tcp_listeners_use_the_write_through_transport(self) -> None:
        service = make_service(Settings(), ["tcp:0:interface=127.0.0.1"], ["unix:" + self.mktemp()])
        service.startService()
        self.addCleanup(service.stopService)
        tcp_port, unix_port = (child.port for child in service)
        self.assertIs(tcp_port.transport, WriteThroughTransport)
        self.assertIsNot(unix_port.transport, WriteThroughTransport)


SERVER_PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")


class StartTLSServer(Protocol):
    """Says OK in plaintext, starts TLS, then writes with both write paths; echoes what it reads."""

    def dataReceived(self, data: bytes) -> None:
        if data == b"STARTTLS\n":
            self.transport.write(b"OK\n")  # type: ignore[union-attr]
            with open(SERVER_PEM, "rb") as pem:
                self.transport.startTLS(ssl.PrivateCertificate.loadPEM(pem.read()).options())  # type: ignore[union-attr]
            self.transport.write(b"secret ")  # type: ignore[union-attr]
            self.transport.writeSequence([b"over ", b"TLS\n"])  # type: ignore[union-attr]
        else:
            self.transport.write(b"echo " + data)  # type: ignore[union-attr]


class StartTLSClient(Protocol):
    """Asks for STARTTLS, starts TLS on OK, sends a line over it and collects what it reads."""

    def __init__(self, done: defer.Deferred[bytes]) -> None:
        self.done = done
        self.got = b""
        self.tls = False

    def connectionMade(self) -> None:
        self.transport.write(b"STARTTLS\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self.tls:
            self.start_tls(data)
            return
        self.got += data
        if self.got.endswith(b"echo ping\n"):
            self.transport.loseConnection()  # type: ignore[union-attr]

    def start_tls(self, data: bytes) -> None:
        if data != b"OK\n":  # anything more is the server's TLS (or its plaintext): not yet
            self.done.errback(AssertionError(f"before TLS the client read {data!r}"))
            return
        self.tls = True
        self.transport.startTLS(ssl.CertificateOptions())  # type: ignore[union-attr]
        self.transport.write(b"ping\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        if not self.done.called:
            self.done.callback(self.got)


class StartTLSTests(TestCase):
    def test_writes_after_start_tls_go_through_the_tls_layer(self) -> None:
        port = reactor.listenTCP(0, Factory.forProtocol(StartTLSServer), interface="127.0.0.1")  # type: ignore[attr-defined]
        port.transport = WriteThroughTransport
        self.addCleanup(port.stopListening)
        done: defer.Deferred[bytes] = defer.Deferred()
        factory = ClientFactory.forProtocol(lambda: StartTLSClient(done))
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)  # type: ignore[attr-defined]
        # plaintext after STARTTLS would break the client's handshake: it would read nothing
        done.addCallback(self.assertEqual, b"secret over TLS\necho ping\n")
        return done
