"""tinytcp's reactor, driven by hand (a fresh instance, never installed) over loopback sockets."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.python import context, log
from twisted.trial.unittest import SynchronousTestCase

from tinytcp.server.reactor import EPollReactor


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        if data == b"boom":
            raise ZeroDivisionError("a bug in a protocol")
        if data == b"log":
            log.msg("legacy message")
            # a nested context sees both its own keys and the log context under it
            context.call({"nested": 1}, lambda: log.msg("nested", nested=context.get("nested")))
        self.transport.write(data)  # type: ignore[union-attr]


class ReactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.port = self.reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(self.close)

    def close(self) -> None:
        self.port.stopListening()
        self.reactor.disconnectAll()
        self.reactor.iterate(0)
        self.reactor.removeAll()
        self.reactor._poller.close()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port.getHost().port), timeout=5)
        self.addCleanup(sock.close)
        sock.setblocking(False)
        return sock

    def run_until(self, sock: socket.socket, done: bytes | None) -> bytes:
        """Turn the reactor until ``sock`` has read ``done`` (None: until the server closes it)."""
        got = b""
        for _ in range(500):
            self.reactor.iterate(0.01)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                return got
            if not chunk and done is None:
                return got
            got += chunk
            if done is not None and got == done:
                return got
        self.fail(f"no {done!r} after 500 reactor turns, got {got!r}")

    def test_serves_connections(self) -> None:
        first, second = self.connect(), self.connect()
        first.sendall(b"one")
        second.sendall(b"two")
        self.assertEqual(self.run_until(first, b"one"), b"one")
        self.assertEqual(self.run_until(second, b"two"), b"two")

    def test_an_exception_in_a_handler_is_logged_and_closes_only_that_connection(self) -> None:
        bad, good = self.connect(), self.connect()
        bad.sendall(b"boom")
        self.assertEqual(self.run_until(bad, None), b"")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        good.sendall(b"still here")
        self.assertEqual(self.run_until(good, b"still here"), b"still here")

    def test_legacy_log_messages_carry_the_connection_prefix(self) -> None:
        events: list[dict[str, Any]] = []
        log.addObserver(events.append)
        self.addCleanup(log.removeObserver, events.append)
        sock = self.connect()
        sock.sendall(b"log")
        self.assertEqual(self.run_until(sock, b"log"), b"log")
        logged = {event["message"][0]: event for event in events if event.get("message")}
        self.assertTrue(logged["legacy message"]["system"].startswith("Echo,"), logged["legacy message"])
        self.assertEqual(logged["nested"]["system"], logged["legacy message"]["system"])
        self.assertEqual(logged["nested"]["nested"], 1)
        # outside the reactor's events the context is what it was
        self.assertEqual(context.get(log.ILogContext)["system"], "-")
