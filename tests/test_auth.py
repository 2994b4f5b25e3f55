"""Accounts without a network: the SQLite store, the failure limiter, the cred checker and
realm, and REGISTER/LOGIN/LOGOUT in the command core (their Deferred replies fired by hand)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.cred import checkers, strcred
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tinytcp.auth.commands import ACCOUNT_COMMANDS, Accounts, Policy, credentials, loggable_line, loggable_payload
from tinytcp.auth.cred import AccountChecker, IAccount, known_names, portal_for
from tinytcp.auth.limiter import FailureLimiter
from tinytcp.auth.network import describe, is_local, peer_key
from tinytcp.auth.store import AccountStore, NameTaken
from tinytcp.protocol.core import Core, Session
from tinytcp.protocol.reply import Code, Reply

ROUNDS = 4  # bcrypt's cheapest cost: these tests check behaviour, not strength


def run_here(f: Any, *args: Any) -> defer.Deferred[Any]:
    """A runner that calls at once: unit tests need no thread pool."""
    return defer.maybeDeferred(f, *args)


def temp_db(case: SynchronousTestCase) -> str:
    folder = tempfile.mkdtemp(prefix="tinytcp-accounts-")
    case.addCleanup(shutil.rmtree, folder, True)
    return os.path.join(folder, "accounts.sqlite3")


def result_of(d: Any) -> Any:
    """The result a Deferred already has (a plain reply is its own result)."""
    if not isinstance(d, defer.Deferred):
        return d
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "the Deferred has not fired"
    return got[0]


class StoreTests(SynchronousTestCase):
    def test_register_check_and_survive_a_restart(self) -> None:
        path = temp_db(self)
        store = AccountStore(path, ROUNDS)
        self.assertEqual(store.register("Ann", b"correct horse"), "Ann")
        self.assertEqual(store.check("Ann", b"correct horse"), "Ann")
        self.assertEqual(store.check("ann", b"correct horse"), "Ann")  # names ignore case
        self.assertIsNone(store.check("Ann", b"wrong"))
        self.assertIsNone(store.check("nobody", b"correct horse"))
        with self.assertRaises(NameTaken):
            store.register("ANN", b"another one")
        again = AccountStore(path, ROUNDS)
        self.assertEqual(again.names(), ["Ann"])
        self.assertEqual(again.check("Ann", b"correct horse"), "Ann")

    def test_passwords_are_stored_as_bcrypt_hashes(self) -> None:
        import sqlite3

        path = temp_db(self)
        AccountStore(path, ROUNDS).register("ann", b"correct horse")
        with sqlite3.connect(path) as db:
            (stored,) = db.execute("SELECT hash FROM accounts").fetchone()
        self.assertTrue(stored.startswith(b"$2b$04$"))
        self.assertNotIn(b"correct horse", open(path, "rb").read())


class LimiterTests(SynchronousTestCase):
    def test_limit_window_and_success(self) -> None:
        clock = MemoryReactorClock()
        limiter = FailureLimiter(clock.seconds, limit=3, window=60)
        for _ in range(3):
            self.assertFalse(limiter.blocked("ann"))
            limiter.failed("ann")
        self.assertTrue(limiter.blocked("ann"))
        self.assertFalse(limiter.blocked("bob"))
        clock.advance(61)
        self.assertFalse(limiter.blocked("ann"))
        limiter.failed("bob")
        limiter.succeeded("bob")
        self.assertEqual(limiter._failures, {})

    def test_memory_is_bounded(self) -> None:
        clock = MemoryReactorClock()
        limiter = FailureLimiter(clock.seconds, limit=3, window=60, max_keys=100)
        for n in range(1000):
            limiter.failed(n)
        self.assertLessEqual(len(limiter._failures), 100)


class NetworkTests(SynchronousTestCase):
    def test_local_peers(self) -> None:
        self.assertTrue(is_local(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertTrue(is_local(IPv4Address("TCP", "127.9.9.9", 1)))
        self.assertTrue(is_local(IPv6Address("TCP", "::1", 1)))
        self.assertTrue(is_local(IPv6Address("TCP", "::ffff:127.0.0.1", 1)))
        self.assertTrue(is_local(UNIXAddress(None)))
        self.assertFalse(is_local(IPv4Address("TCP", "192.0.2.7", 1)))
        self.assertFalse(is_local(IPv6Address("TCP", "2001:db8::1", 1)))
        self.assertEqual(peer_key(IPv4Address("TCP", "192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(peer_key(UNIXAddress(None)), "local")
        self.assertEqual(describe(IPv6Address("TCP", "::1", 7)), "[::1]:7")
        self.assertEqual(describe(UNIXAddress(None)), "unix")


class CredTests(SynchronousTestCase):
    def test_checker_and_realm(self) -> None:
        store = AccountStore(temp_db(self), ROUNDS)
        store.register("ann", b"correct horse")
        portal = portal_for([AccountChecker(store, run_here)])
        interface, avatar, logout = result_of(portal.login(UsernamePassword(b"ANN", b"correct horse"), None, IAccount))
        self.assertIs(interface, IAccount)
        self.assertEqual(avatar.name, b"ann")  # as registered
        for wrong in (UsernamePassword(b"ann", b"wrong"), UsernamePassword(b"bob", b"correct horse")):
            self.assertTrue(result_of(portal.login(wrong, None, IAccount)).check(UnauthorizedLogin))

    def test_strcred_file_checker_stands_in(self) -> None:
        checker = strcred.makeChecker(f"file:{passwd_file(self, 'ann:secret1', 'bob:secret2')}")
        portal = portal_for([checker])
        _, avatar, _ = result_of(portal.login(UsernamePassword(b"ann", b"secret1"), None, IAccount))
        self.assertEqual(avatar.name, b"ann")
        self.assertTrue(
            result_of(portal.login(UsernamePassword(b"ann", b"nope"), None, IAccount)).check(UnauthorizedLogin)
        )
        self.assertEqual(known_names(checker), [b"ann", b"bob"])
        self.assertEqual(known_names(checkers.InMemoryUsernamePasswordDatabaseDontUse(carol=b"x")), [b"carol"])
        self.assertEqual(known_names(checkers.AllowAnonymousAccess()), [])


def passwd_file(case: SynchronousTestCase, *lines: str) -> str:
    """A ``user:password`` file for strcred's ``file:`` checker."""
    folder = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, folder, True)
    path = os.path.join(folder, "passwd")
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


class Fixture:
    """A core with accounts on a SQLite file, a fake clock, and sessions at chosen addresses."""

    def __init__(self, case: SynchronousTestCase, **policy: Any) -> None:
        self.clock = MemoryReactorClock()
        self.store = AccountStore(temp_db(case), ROUNDS)
        self.store.register("ann", b"correct horse")
        portal = portal_for([AccountChecker(self.store, run_here)])
        self.accounts = Accounts(
            portal, Policy(**policy), self.clock, run_here, register=self.store.register, names=[b"ann"]
        )
        self.core = Core(commands=self.accounts.commands())
        self.pushed: list[bytes] = []

    def session(self, host: str = "127.0.0.1", tls: bool = False) -> Session:
        session = Session(push=self.pushed.append)
        session.address = IPv4Address("TCP", host, 5000)
        session.tls = tls
        self.core.room.join(session)
        return session

    def text(self, session: Session, line: bytes) -> Any:
        word, _, argument = line.partition(b" ")
        return result_of(self.core.text_request(session, word, argument or None))

    def frame(self, session: Session, code: int, payload: bytes) -> Any:
        return result_of(self.core.frame_request(session, code, payload))

    def failed_login(self, session: Session, line: bytes) -> Any:
        """A LOGIN that fails: nothing is answered before the failure delay."""
        word, _, argument = line.partition(b" ")
        pending = self.core.text_request(session, word, argument)
        got: list[Any] = []
        pending.addBoth(got.append)
        if got:
            return got[0]  # refused before any check (RATE_LIMITED, TLS_REQUIRED, ...)
        self.clock.advance(0.9)
        assert not got, "a failed LOGIN was answered before the delay"
        self.clock.advance(0.2)
        return got[0]


def err(name: str) -> Reply:
    return Reply(Code.ERROR, name.encode())


class CommandTests(SynchronousTestCase):
    def test_help_lists_the_account_commands(self) -> None:
        core = Fixture(self).core
        self.assertEqual(core.help_list, b"TIME ECHO REVERSE HELP NICK SAY WHO INFO REGISTER LOGIN LOGOUT QUIT")
        self.assertEqual(
            [(c.name, c.code) for c in ACCOUNT_COMMANDS], [("REGISTER", 10), ("LOGIN", 11), ("LOGOUT", 12)]
        )

    def test_login_chats_under_the_user_name(self) -> None:
        f = Fixture(self)
        bob = f.session()
        f.text(bob, b"NICK bob")
        ann = f.session()
        self.assertEqual(f.text(ann, b"LOGIN ANN correct horse"), Reply(Code.LOGIN, b"ann"))
        self.assertEqual((ann.user, ann.nick), (b"ann", b"ann"))
        self.assertEqual(f.pushed[-1], b"MSG * ann joined\r\n")
        self.assertEqual(f.text(ann, b"SAY hi"), Reply(Code.SAY, b"1"))
        self.assertEqual(f.pushed[-1], b"MSG ann hi\r\n")
        self.assertEqual(f.text(ann, b"NICK other"), err("LOGGED_IN"))
        self.assertEqual(f.text(ann, b"NICK ann"), Reply(Code.NICK, b"ann"))
        self.assertEqual(f.text(ann, b"LOGOUT"), Reply(Code.LOGOUT, b""))
        self.assertEqual((ann.user, ann.nick), (None, None))
        self.assertEqual(f.pushed[-1], b"MSG * ann is now guest2\r\n")
        self.assertEqual(f.text(ann, b"LOGOUT"), err("AUTH_REQUIRED"))

    def test_binary_codes(self) -> None:
        f = Fixture(self)
        ann = f.session()
        self.assertEqual(f.frame(ann, 11, b"ann correct horse"), Reply(Code.LOGIN, b"ann"))
        self.assertEqual(f.frame(ann, 12, b""), Reply(Code.LOGOUT, b""))
        self.assertEqual(f.frame(ann, 10, b"bob battery staple"), Reply(Code.REGISTER, b"bob"))

    def test_wrong_password_and_unknown_user_get_the_same_late_reply(self) -> None:
        f = Fixture(self)
        session = f.session()
        self.assertEqual(f.failed_login(session, b"LOGIN ann wrong password"), err("AUTH_FAILED"))
        self.assertEqual(f.failed_login(session, b"LOGIN nobody correct horse"), err("AUTH_FAILED"))
        self.assertIsNone(session.user)

    def test_registered_names_are_reserved(self) -> None:
        f = Fixture(self)
        guest = f.session()
        self.assertEqual(f.text(guest, b"NICK ANN"), err("NICK_RESERVED"))
        self.assertEqual(f.text(guest, b"REGISTER bob battery staple"), Reply(Code.REGISTER, b"bob"))
        self.assertEqual((guest.user, guest.nick), (b"bob", b"bob"))
        other = f.session()
        self.assertEqual(f.text(other, b"NICK Bob"), err("NICK_RESERVED"))
        self.assertEqual(f.text(other, b"REGISTER BOB another pass"), err("NICK_TAKEN"))
        self.assertEqual(AccountStore(f.store.path, ROUNDS).check("bob", b"battery staple"), "bob")

    def test_register_rules(self) -> None:
        f = Fixture(self)
        session = f.session()
        for line in (
            b"REGISTER",
            b"REGISTER bob",
            b"REGISTER bob short",
            b"REGISTER b@d battery staple",
            b"REGISTER bob " + b"x" * 73,
        ):
            self.assertEqual(f.text(session, line), err("BAD_ARGUMENTS"), line)
        holder = f.session()
        f.text(holder, b"NICK carol")
        self.assertEqual(f.text(session, b"REGISTER carol battery staple"), err("NICK_TAKEN"))
        self.assertEqual(f.text(session, b"REGISTER Guest7 battery staple"), err("NICK_TAKEN"))
        f.text(session, b"LOGIN ann correct horse")
        self.assertEqual(f.text(session, b"REGISTER dave battery staple"), err("LOGGED_IN"))

    def test_register_can_be_off(self) -> None:
        f = Fixture(self, allow_register=False)
        self.assertEqual(f.text(f.session(), b"REGISTER bob battery staple"), err("REGISTER_DISABLED"))

    def test_one_connection_per_user(self) -> None:
        f = Fixture(self)
        first, second = f.session(), f.session()
        f.text(first, b"LOGIN ann correct horse")
        self.assertEqual(f.text(second, b"LOGIN ann correct horse"), err("NICK_TAKEN"))
        self.assertIsNone(second.user)

    def test_a_session_closed_during_the_check_is_not_renamed(self) -> None:
        f = Fixture(self)
        session = f.session()
        f.core.room.leave(session)
        self.assertEqual(f.text(session, b"LOGIN ann correct horse"), Reply(Code.LOGIN, b"ann"))
        self.assertEqual(f.core.room.nicks, {})

    def test_credentials_need_tls_from_other_machines(self) -> None:
        f = Fixture(self)
        remote = f.session("192.0.2.7")
        self.assertEqual(f.text(remote, b"LOGIN ann correct horse"), err("TLS_REQUIRED"))
        self.assertEqual(f.text(remote, b"REGISTER bob battery staple"), err("TLS_REQUIRED"))
        self.assertEqual(
            f.text(f.session("192.0.2.7", tls=True), b"LOGIN ann correct horse"), Reply(Code.LOGIN, b"ann")
        )
        f = Fixture(self, allow_plaintext=True)
        self.assertEqual(f.text(f.session("192.0.2.7"), b"LOGIN ann correct horse"), Reply(Code.LOGIN, b"ann"))

    def test_failures_are_limited_per_user(self) -> None:
        f = Fixture(self, user_failures=3, peer_failures=100, window=60)
        for n in range(3):
            self.assertEqual(f.failed_login(f.session(f"192.0.2.{n}", tls=True), b"LOGIN ann nope"), err("AUTH_FAILED"))
        fresh = f.session("192.0.2.99", tls=True)
        self.assertEqual(f.text(fresh, b"LOGIN ann correct horse"), err("RATE_LIMITED"))
        self.assertIsNone(fresh.user)
        f.clock.advance(61)
        self.assertEqual(f.text(fresh, b"LOGIN ann correct horse"), Reply(Code.LOGIN, b"ann"))

    def test_failures_are_limited_per_peer(self) -> None:
        f = Fixture(self, user_failures=100, peer_failures=3, window=60)
        attacker = f.session("192.0.2.1", tls=True)
        for user in (b"ann", b"bob", b"carol"):
            self.assertEqual(f.failed_login(attacker, b"LOGIN " + user + b" guess"), err("AUTH_FAILED"))
        self.assertEqual(f.text(attacker, b"LOGIN ann correct horse"), err("RATE_LIMITED"))
        self.assertEqual(f.text(attacker, b"REGISTER dave battery staple"), err("RATE_LIMITED"))
        other = f.session("192.0.2.2", tls=True)
        self.assertEqual(f.text(other, b"LOGIN ann correct horse"), Reply(Code.LOGIN, b"ann"))

    def test_require_login(self) -> None:
        f = Fixture(self, require_login=True, allow_register=False)
        session = f.session()
        for line in (b"ECHO hi", b"TIME", b"NICK bob", b"SAY hi", b"WHO", b"LOGOUT"):
            self.assertEqual(f.text(session, line), err("AUTH_REQUIRED"), line)
        self.assertEqual(f.text(session, b"HELP echo").code, Code.HELP)
        self.assertEqual(f.text(session, b"REGISTER bob battery staple"), err("REGISTER_DISABLED"))
        self.assertEqual(f.text(session, b"LOGIN ann correct horse"), Reply(Code.LOGIN, b"ann"))
        self.assertEqual(f.text(session, b"ECHO hi"), Reply(Code.ECHO, b"hi"))
        self.assertEqual(f.text(session, b"QUIT").code, Code.QUIT)

    def test_strcred_checker_without_registration(self) -> None:
        clock = MemoryReactorClock()
        checker = strcred.makeChecker(f"file:{passwd_file(self, 'ann:secret1')}")
        accounts = Accounts(portal_for([checker]), Policy(), clock, run_here, names=known_names(checker))
        core = Core(commands=accounts.commands())
        session = Session()
        core.room.join(session)
        self.assertEqual(result_of(core.text_request(session, b"LOGIN", b"ann secret1")), Reply(Code.LOGIN, b"ann"))
        other = Session()
        core.room.join(other)
        self.assertEqual(
            result_of(core.text_request(other, b"REGISTER", b"bob battery staple")), err("REGISTER_DISABLED")
        )


class RedactionTests(SynchronousTestCase):
    def test_passwords_never_reach_the_log(self) -> None:
        self.assertEqual(loggable_line(b"login ann correct horse"), b"login ann ***")
        self.assertEqual(loggable_line(b"REGISTER  bob  s3cret pass"), b"REGISTER bob ***")
        self.assertEqual(loggable_line(b"ECHO ann correct horse"), b"ECHO ann correct horse")
        self.assertEqual(loggable_payload(11, b"ann correct horse"), b"ann ***")
        self.assertEqual(loggable_line(b"LOGIN s3cret"), b"LOGIN ***")  # a user who left out the name
        self.assertEqual(loggable_payload(10, b"s3cret"), b"***")
        self.assertEqual(loggable_payload(1, b"ann correct horse"), b"ann correct horse")

    def test_credentials_syntax(self) -> None:
        self.assertEqual(credentials(b"ann  correct horse "), (b"ann", b"correct horse "))
        self.assertIsNone(credentials(b"ann"))
        self.assertIsNone(credentials(None))
