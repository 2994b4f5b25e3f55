"""The account commands through the real protocols, on StringTransports and a fake clock:
pipelined requests wait for a LOGIN, passwords stay out of verbose logs, credentials need TLS
from other machines, and protected mode turns non-local clients away."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.interfaces import INegotiated
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from tests.test_auth import ROUNDS, temp_db
from tinytcp.auth.commands import Accounts, Policy
from tinytcp.auth.cred import AccountChecker, portal_for
from tinytcp.auth.store import AccountStore
from tinytcp.protocol.core import Core
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.state import Server, Settings
from tinytcp.server.text import TextProtocol

WELCOME = b"WELCOME tinytcp 0.1 ready; type HELP\r\n"


class HeldRunner:
    """Runs each blocking call only when the test says so, like a thread that takes its time."""

    def __init__(self) -> None:
        self.calls: list[tuple[defer.Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls.append((d, f, args))
        return d

    def finish_all(self) -> None:
        while self.calls:
            d, f, args = self.calls.pop(0)
            d.callback(f(*args))


class AccountServer:
    """A Server whose core has accounts on a real SQLite file; ``ann`` is registered."""

    def __init__(self, case: SynchronousTestCase, **settings: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.runner = HeldRunner()
        store = AccountStore(temp_db(case), ROUNDS)
        store.register("ann", b"correct horse")
        policy = Policy(require_login=settings.get("require_login", False))
        accounts = Accounts(
            portal_for([AccountChecker(store, self.runner)]),
            policy,
            self.reactor,
            self.runner,
            register=store.register,
            names=[b"ann"],
        )
        self.server = Server(Settings(**settings), core=Core(commands=accounts.commands()), reactor=self.reactor)

    def connect(self, protocol_class: Any, address: Any = None, tls: bool = False) -> tuple[Any, StringTransport]:
        protocol = protocol_class(self.server)
        transport = StringTransport(peerAddress=address or IPv4Address("TCP", "127.0.0.1", 5555))
        if tls:
            directlyProvides(transport, INegotiated)
        protocol.makeConnection(transport)
        return protocol, transport


class PipeliningTests(SynchronousTestCase):
    def test_text_requests_after_a_login_wait_for_its_reply(self) -> None:
        fixture = AccountServer(self)
        protocol, transport = fixture.connect(TextProtocol)
        protocol.dataReceived(b"ECHO before\nLOGIN ann correct horse\nECHO after\nWHO\n")
        self.assertEqual(transport.value(), WELCOME + b"ECHO before\r\n")
        fixture.runner.finish_all()
        self.assertEqual(transport.value(), WELCOME + b"ECHO before\r\nLOGIN ann\r\nECHO after\r\nWHO ann\r\n")

    def test_binary_frames_after_a_register_wait_for_its_reply(self) -> None:
        fixture = AccountServer(self)
        protocol, transport = fixture.connect(BinaryProtocol)
        protocol.dataReceived(encode_frame(10, b"bob battery staple") + encode_frame(1, b"after"))
        self.assertEqual(transport.value(), b"")
        fixture.runner.finish_all()
        self.assertEqual(transport.value(), encode_frame(10, b"bob") + encode_frame(1, b"after"))

    def test_a_failed_login_is_answered_late_and_the_rest_waits(self) -> None:
        fixture = AccountServer(self)
        protocol, transport = fixture.connect(TextProtocol)
        protocol.dataReceived(b"LOGIN ann wrong password\nECHO after\n")
        fixture.runner.finish_all()
        self.assertEqual(transport.value(), WELCOME)
        fixture.reactor.advance(1)
        self.assertEqual(transport.value(), WELCOME + b"ERROR AUTH_FAILED\r\nECHO after\r\n")

    def test_require_login_gates_every_command_but_four(self) -> None:
        fixture = AccountServer(self, require_login=True)
        protocol, transport = fixture.connect(TextProtocol)
        protocol.dataReceived(b"ECHO hi\nHELP echo\nLOGIN ann correct horse\nECHO hi\n")
        fixture.runner.finish_all()
        self.assertEqual(
            transport.value(),
            WELCOME
            + b"ERROR AUTH_REQUIRED\r\nHELP ECHO <text>: send the text back unchanged\r\nLOGIN ann\r\nECHO hi\r\n",
        )
        binary, sent = fixture.connect(BinaryProtocol)
        binary.dataReceived(encode_frame(1, b"x"))
        self.assertEqual(sent.value(), encode_frame(0xFF, b"AUTH_REQUIRED"))

    def test_a_client_gone_during_the_check_gets_nothing(self) -> None:
        fixture = AccountServer(self)
        protocol, transport = fixture.connect(TextProtocol)
        protocol.dataReceived(b"LOGIN ann correct horse\n")
        protocol.connectionLost()
        fixture.runner.finish_all()
        self.assertEqual(transport.value(), WELCOME)
        self.assertEqual(fixture.server.core.room.nicks, {})


class LogTests(SynchronousTestCase):
    def test_passwords_never_reach_a_verbose_log(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        fixture = AccountServer(self, verbose=True)
        text, _ = fixture.connect(TextProtocol)
        text.dataReceived(b"REGISTER bob battery staple\nLOGIN ann wrong guess\nlogin ann correct horse\n")
        binary, _ = fixture.connect(BinaryProtocol)
        binary.dataReceived(encode_frame(11, b"ann correct horse") + encode_frame(10, b"carol open sesame"))
        fixture.runner.finish_all()
        fixture.reactor.advance(2)
        fixture.runner.finish_all()
        logged = "\n".join(formatEvent(event) for event in events)
        self.assertIn("LOGIN ann ***", logged)
        for password in ("battery staple", "wrong guess", "correct horse", "open sesame"):
            self.assertNotIn(password, logged)


class RemoteClientTests(SynchronousTestCase):
    remote = IPv4Address("TCP", "192.0.2.7", 4000)

    def test_protected_mode_denies_other_machines_with_a_hint(self) -> None:
        fixture = AccountServer(self)
        protocol, transport = fixture.connect(TextProtocol, self.remote)
        self.assertTrue(transport.value().startswith(b"ERROR DENIED protected mode: "))
        self.assertTrue(transport.value().endswith(b"--no-protected-mode\r\n"))
        self.assertEqual(transport.value().count(b"\n"), 1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(fixture.server.connections, set())
        _, sent = fixture.connect(BinaryProtocol, self.remote)
        self.assertTrue(sent.value().startswith(encode_frame(0xFF, b"")[:1]))
        self.assertIn(b"DENIED protected mode", sent.value())
        for address in (IPv4Address("TCP", "127.0.0.1", 1), UNIXAddress(None)):
            _, served = fixture.connect(TextProtocol, address)
            self.assertEqual(served.value(), WELCOME)

    def test_protected_mode_is_off_when_login_is_required_or_when_asked(self) -> None:
        for settings in ({"require_login": True}, {"protected_mode": False}):
            _, transport = AccountServer(self, **settings).connect(TextProtocol, self.remote)
            self.assertEqual(transport.value(), WELCOME)

    def test_credentials_from_other_machines_need_tls(self) -> None:
        fixture = AccountServer(self, protected_mode=False)
        protocol, transport = fixture.connect(TextProtocol, self.remote)
        protocol.dataReceived(b"LOGIN ann correct horse\nREGISTER bob battery staple\n")
        self.assertEqual(transport.value(), WELCOME + b"ERROR TLS_REQUIRED\r\nERROR TLS_REQUIRED\r\n")
        self.assertEqual(fixture.runner.calls, [])  # no password was checked
        protocol, transport = fixture.connect(TextProtocol, self.remote, tls=True)
        protocol.dataReceived(b"LOGIN ann correct horse\n")
        fixture.runner.finish_all()
        self.assertEqual(transport.value(), WELCOME + b"LOGIN ann\r\n")
