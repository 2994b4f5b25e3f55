"""Accounts end to end: the real ``twistd tinytcp`` with an SQLite file in a temp folder,
over TCP, TLS and a unix socket, spoken to over raw sockets and ``tinytcp-client``."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.certs import make_pki
from tests.support import RunningServer, read_lines
from tests.test_cli import run_client
from tests.test_e2e import recv_frames
from tinytcp.auth.store import AccountStore
from tinytcp.protocol.wire import encode_frame

WELCOME = b"WELCOME tinytcp 0.1 ready; type HELP"
FAST = ("--bcrypt-rounds", "4")  # these tests check behaviour; the latency test uses the default cost


def temp_folder(case: SynchronousTestCase) -> str:
    folder = tempfile.mkdtemp(prefix="tinytcp-e2e-accounts-")
    case.addCleanup(shutil.rmtree, folder, True)
    return folder


def talk(server: RunningServer, *lines: bytes) -> list[bytes]:
    """Send ``lines`` pipelined on a new text connection; their replies, WELCOME left out."""
    with server.connect() as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))
        return read_lines(sock, len(lines) + 1)[1:]


class AccountTests(SynchronousTestCase):
    def start(self, *args: str) -> RunningServer:
        server = RunningServer(*FAST, *args)
        self.addCleanup(server.stop)
        return server

    def test_accounts_survive_a_restart_and_names_stay_reserved(self) -> None:
        path = os.path.join(temp_folder(self), "accounts.sqlite3")
        server = self.start("--accounts", path)
        self.assertEqual(
            talk(server, b"REGISTER ann correct horse", b"WHO", b"LOGOUT", b"NICK ann"),
            [b"REGISTER ann", b"WHO ann", b"LOGOUT", b"ERROR NICK_RESERVED"],
        )
        server.stop()
        server = self.start("--accounts", path)
        with server.connect("binary") as sock:
            sock.sendall(encode_frame(11, b"ANN correct horse") + encode_frame(8, b"") + encode_frame(12, b""))
            self.assertEqual(recv_frames(sock, 3), [(11, b"ann"), (8, b"ann"), (12, b"")])
        self.assertEqual(
            talk(server, b"NICK Ann", b"LOGIN ann wrong password", b"LOGIN nobody correct horse"),
            [b"ERROR NICK_RESERVED", b"ERROR AUTH_FAILED", b"ERROR AUTH_FAILED"],
        )
        self.assertEqual(AccountStore(path, 4).names(), ["ann"])

    def test_require_login(self) -> None:
        folder = temp_folder(self)
        server = self.start("--require-login", "--accounts", os.path.join(folder, "a.sqlite3"))
        self.assertEqual(
            talk(server, b"ECHO hi", b"REGISTER ann correct horse", b"HELP"),
            [
                b"ERROR AUTH_REQUIRED",
                b"ERROR REGISTER_DISABLED",
                b"HELP TIME ECHO REVERSE HELP NICK SAY WHO INFO REGISTER LOGIN LOGOUT QUIT",
            ],
        )
        server = self.start("--require-login", "--allow-register", "--accounts", os.path.join(folder, "b.sqlite3"))
        self.assertEqual(
            talk(server, b"ECHO hi", b"REGISTER ann correct horse", b"ECHO hi"),
            [b"ERROR AUTH_REQUIRED", b"REGISTER ann", b"ECHO hi"],
        )

    def test_default_database_is_in_the_working_folder(self) -> None:
        server = self.start("--require-login", "--allow-register")
        self.assertEqual(talk(server, b"REGISTER ann correct horse"), [b"REGISTER ann"])
        self.assertTrue(os.path.exists(os.path.join(server.workdir, "accounts.sqlite3")))

    def test_strcred_file_checker(self) -> None:
        passwd = os.path.join(temp_folder(self), "passwd")
        with open(passwd, "w") as f:
            f.write("ann:correct horse\n")
        server = self.start("--auth", f"file:{passwd}")
        self.assertEqual(
            talk(server, b"NICK ann", b"REGISTER bob battery staple", b"LOGIN ann correct horse", b"WHO"),
            [b"ERROR NICK_RESERVED", b"ERROR REGISTER_DISABLED", b"LOGIN ann", b"WHO ann"],
        )

    def test_failed_logins_are_limited_and_passwords_never_logged(self) -> None:
        path = os.path.join(temp_folder(self), "accounts.sqlite3")
        store = AccountStore(path, 4)
        store.register("ann", b"correct horse")
        server = self.start("--accounts", path, "--login-failures", "2", "--verbose")
        started = time.monotonic()
        self.assertEqual(
            talk(server, b"LOGIN ann guess one", b"LOGIN ann guess two", b"LOGIN ann correct horse"),
            [b"ERROR AUTH_FAILED", b"ERROR AUTH_FAILED", b"ERROR RATE_LIMITED"],
        )
        self.assertGreaterEqual(time.monotonic() - started, 2)  # each failure is answered a second late
        server.wait_for_log(r"LOGIN for ann refused: too many failures")
        for password in ("guess one", "guess two", "correct horse"):
            self.assertNotIn(password, server.log)
        self.assertIn("LOGIN ann ***", server.log)

    def test_login_over_tls_with_the_client(self) -> None:
        pki = make_pki(temp_folder(self))
        path = os.path.join(temp_folder(self), "accounts.sqlite3")
        listener = f"ssl:0:interface=127.0.0.1:privateKey={pki.server}"
        server = self.start("--accounts", path, "--require-login", "--allow-register", "--port", listener)
        port = server.ports_of("text", 2)[1]
        tls = ("--port", str(port), "--tls", "--cafile", pki.ca)
        result = run_client(*tls, "--transcript", "REGISTER ann correct horse", "SAY hi", "QUIT")
        self.assertEqual(result.returncode, 0, result)
        self.assertEqual(
            result.stdout.splitlines()[1:],
            ["-> REGISTER ann ***", "<- REGISTER ann", "-> SAY hi", "<- SAID 0", "-> QUIT", "<- BYE"],
        )
        result = run_client(*tls, "--script", "-", stdin=b"LOGIN ann correct horse\nECHO secure\n")
        self.assertEqual((result.returncode, result.stdout), (0, "LOGIN ann\nECHO secure\n"))


class UnixSocketTests(SynchronousTestCase):
    def test_unix_socket_is_not_world_writable_and_the_client_reaches_it(self) -> None:
        folder = temp_folder(self)
        path = os.path.join(folder, "tinytcp.sock")
        server = RunningServer(*FAST, "--port", f"unix:{path}", "--accounts", os.path.join(folder, "a.sqlite3"))
        self.addCleanup(server.stop)
        server.wait_for_log(r"text mode listening on unix:")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        result = run_client("--unix", path, "REGISTER ann correct horse", "WHO", "QUIT")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "REGISTER ann\nWHO ann\nBYE\n", ""))


class BystanderLatencyTests(SynchronousTestCase):
    """Hashing runs in threads: 20 LOGINs at bcrypt's default cost must not stall another client."""

    logins = 20

    def test_round_trips_stay_fast_during_concurrent_logins(self) -> None:
        folder = temp_folder(self)
        path = os.path.join(folder, "accounts.sqlite3")
        store = AccountStore(path)  # the default cost, 12
        for n in range(self.logins):
            store.register(f"user{n}", b"password %d" % n)
        server = RunningServer("--accounts", path)
        self.addCleanup(server.stop)
        bystander = server.connect()
        self.addCleanup(bystander.close)
        bystander.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_lines(bystander, 1)
        answered: list[bytes] = []

        def log_in(n: int) -> None:
            with server.connect(timeout=60) as sock:
                read_lines(sock, 1)
                sock.sendall(b"LOGIN user%d password %d\n" % (n, n))
                answered.extend(read_lines(sock, 1))

        threads = [threading.Thread(target=log_in, args=(n,)) for n in range(self.logins)]
        for thread in threads:
            thread.start()
        round_trips: list[float] = []
        deadline = time.monotonic() + 120
        while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
            started = time.perf_counter()
            bystander.sendall(b"ECHO ping\n")
            self.assertEqual(read_lines(bystander, 1), [b"ECHO ping"])
            round_trips.append(time.perf_counter() - started)
            time.sleep(0.005)
        for thread in threads:
            thread.join(60)
        self.assertEqual(sorted(answered), sorted(b"LOGIN user%d" % n for n in range(self.logins)))
        round_trips.sort()
        p99 = round_trips[int(len(round_trips) * 0.99)]
        self.assertGreater(len(round_trips), 100)
        self.assertLess(p99, 0.050, f"p99 {p99 * 1000:.1f} ms over {len(round_trips)} round trips")
