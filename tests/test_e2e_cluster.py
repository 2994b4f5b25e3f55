"""One chat room across several real ``twistd tinytcp`` nodes through a real redis-server (--redis)."""

from __future__ import annotations

import os
import re
import signal
import socket
import tempfile
import threading
import time
import unittest
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from tests.certs import make_pki
from tests.redis_server import RunningRedis, redis_server_path
from tests.support import RunningServer, free_port, start_twistd
from tests.test_e2e import recv_frames
from tests.test_workers import one_client_per_worker
from tinytcp.cluster.redis import REPLY_TIMEOUT
from tinytcp.protocol.reply import Code
from tinytcp.protocol.wire import encode_frame

#: CI installs redis-server (.ci/run) and sets this, so a missing server fails instead of skipping
REQUIRED = os.environ.get("TINYTCP_REQUIRE_REDIS") == "1"
MISSING = None if redis_server_path() else "redis-server not installed (apt-get install redis-server)"
if MISSING and REQUIRED:
    raise RuntimeError(f"TINYTCP_REQUIRE_REDIS=1 but {MISSING}")

TTL = "3"


class Lines:
    """A text client's socket read line by line, whatever the reads hold."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise AssertionError(f"connection closed after {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def lines(self, count: int) -> list[bytes]:
        return [self.line() for _ in range(count)]

    def ask(self, request: bytes) -> bytes:
        """Send one request; its reply, skipping pushed MSG lines that arrive first.

        Another node's messages reach this node on their own connection to Redis, so a
        presence notice published before this client took its nick may still reach it after.
        """
        self.sock.sendall(request + b"\r\n")
        return self.reply()

    def reply(self) -> bytes:
        """The next line that is not a pushed MSG."""
        while True:
            reply = self.line()
            if not reply.startswith(b"MSG "):
                return reply

    def wait_for(self, message: bytes) -> None:
        """Read pushed lines until ``message`` (others, such as racing notices, are skipped)."""
        while self.line() != message:
            pass

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def ask(client: Lines, request: bytes) -> bytes:
    return client.ask(request)


def eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Call ``check`` until it returns something true (what another node does shows up soon)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


@unittest.skipIf(MISSING is not None, MISSING or "")
class SharedRoomTests(SynchronousTestCase):
    """Clients on different nodes chat as if they were on one."""

    def setUp(self) -> None:
        self.redis = RunningRedis()
        self.addCleanup(self.redis.close)

    def node(self, *args: str, binary: bool = False) -> RunningServer:
        server = RunningServer("--redis", self.redis.url, "--redis-ttl", TTL, "--say-rate", "0", *args, binary=binary)
        self.addCleanup(server.stop)
        server.wait_for_log("chat shared through Redis at redis://127.0.0.1")
        return server

    def client(self, server: RunningServer) -> Lines:
        sock = server.connect()
        self.addCleanup(sock.close)
        client = Lines(sock)
        self.assertTrue(client.line().startswith(b"WELCOME"))
        return client

    def binary_client(self, server: RunningServer) -> socket.socket:
        sock = server.connect("binary")
        self.addCleanup(sock.close)
        return sock

    def test_say_presence_and_who_span_three_nodes_and_both_formats(self) -> None:
        a, b, c = self.node(), self.node(binary=True), self.node()
        ann, bin_, lurker = self.client(a), self.binary_client(b), self.client(c)
        bin_.sendall(encode_frame(Code.NICK, b"bin"))
        self.assertEqual(recv_frames(bin_, 1), [(Code.NICK, b"bin")])
        self.assertEqual(ask(ann, b"NICK ann"), b"NICK ann")
        # presence notices go to the members that have a nick when they arrive
        self.assertEqual(recv_frames(bin_, 1), [(0x80, b"* ann joined")])
        # SAY from node a reaches node b (binary) and node c (a guest)
        self.assertRegex(ask(ann, b"SAY hello, everyone"), rb"SAID \d+")
        self.assertEqual(recv_frames(bin_, 1), [(0x80, b"ann hello, everyone")])
        self.assertEqual(lurker.line(), b"MSG ann hello, everyone")
        # WHO on any node lists the whole room (the guest count comes with the heartbeat)
        self.assertEqual(eventually(lambda: ask(lurker, b"WHO") == b"WHO ann bin +1"), True)
        bin_.sendall(encode_frame(Code.NICK, b"binny"))
        self.assertEqual(recv_frames(bin_, 1), [(Code.NICK, b"binny")])
        self.assertEqual(ann.line(), b"MSG * bin is now binny")
        bin_.sendall(encode_frame(Code.QUIT, b""))
        self.assertEqual(recv_frames(bin_, 1), [(Code.QUIT, b"BYE")])
        self.assertEqual(ann.line(), b"MSG * binny left")
        self.assertEqual(eventually(lambda: ask(ann, b"WHO") == b"WHO ann +1"), True)
        # the nick came free room-wide
        self.assertEqual(ask(lurker, b"NICK binny"), b"NICK binny")

    def test_nicks_are_unique_room_wide_ignoring_case(self) -> None:
        a, b = self.node(), self.node()
        first, second = self.client(a), self.client(b)
        self.assertEqual(ask(first, b"NICK Zed"), b"NICK Zed")
        self.assertEqual(ask(second, b"NICK zed"), b"ERROR NICK_TAKEN")
        self.assertEqual(ask(second, b"NICK ZED"), b"ERROR NICK_TAKEN")
        self.assertEqual(ask(first, b"NICK zed"), b"NICK zed")  # its own nick, another case
        self.assertEqual(ask(first, b"NICK ada"), b"NICK ada")
        self.assertEqual(ask(second, b"NICK zed"), b"NICK zed")  # the old nick was given back
        self.assertEqual(ask(second, b"NICK ada"), b"ERROR NICK_TAKEN")

    def test_many_clients_race_for_one_nick_and_exactly_one_wins(self) -> None:
        a, b = self.node(), self.node()
        socks = [self.client(server) for server in (a, b) * 10]
        for sock in socks:
            sock.sendall(b"NICK prize\r\n")
        replies = [sock.reply() for sock in socks]
        self.assertEqual(replies.count(b"NICK prize"), 1, replies)
        self.assertEqual(replies.count(b"ERROR NICK_TAKEN"), len(socks) - 1, replies)

    def test_guest_names_differ_across_nodes(self) -> None:
        a, b = self.node(), self.node()
        names = set()
        listener = self.client(a)
        self.assertEqual(ask(listener, b"NICK listener"), b"NICK listener")
        guests = [self.client(server) for server in (a, b, a, b)]  # all welcomed before anyone speaks
        for guest in guests:
            self.assertRegex(ask(guest, b"SAY who am I"), rb"SAID \d+")
            names.add(listener.line().split()[1])
        self.assertEqual(len(names), 4, names)

    def test_a_crashed_nodes_nicks_are_free_within_the_ttl(self) -> None:
        a, b = self.node(), self.node()
        doomed = self.client(a)
        self.assertEqual(ask(doomed, b"NICK ghost"), b"NICK ghost")
        survivor = self.client(b)
        self.assertEqual(ask(survivor, b"NICK ghost"), b"ERROR NICK_TAKEN")
        a.process.kill()  # SIGKILL: no goodbye reaches Redis
        a.process.wait(10)
        killed = time.monotonic()
        got = eventually(lambda: ask(survivor, b"NICK ghost") == b"NICK ghost", timeout=float(TTL) + 5)
        self.assertTrue(got, "the crashed node's nick was never released")
        self.assertLess(time.monotonic() - killed, float(TTL) + 2)
        self.assertEqual(eventually(lambda: ask(survivor, b"WHO") == b"WHO ghost"), True)

    def test_redis_going_away_and_coming_back(self) -> None:
        a, b = self.node(), self.node()
        ann, bob = self.client(a), self.client(b)
        self.assertEqual(ask(ann, b"NICK ann"), b"NICK ann")
        self.assertEqual(ask(bob, b"NICK bob"), b"NICK bob")
        ann.wait_for(b"MSG * bob joined")
        self.redis.stop()
        a.wait_for_log("is unreachable: chat answers ERROR CHAT_UNAVAILABLE")
        b.wait_for_log("is unreachable: chat answers ERROR CHAT_UNAVAILABLE")
        # chat answers at once with the documented error, 200 times, and queues nothing;
        # every other command keeps working
        ann.sendall(b"SAY anyone?\r\n" * 200 + b"NICK other\r\nWHO\r\nECHO still here\r\nREV abc\r\n")
        replies = ann.lines(204)
        self.assertEqual(replies[:202], [b"ERROR CHAT_UNAVAILABLE"] * 202)
        self.assertEqual(replies[202:], [b"ECHO still here", b"REVERSE cba"])
        # the same port again, empty (no persistence): the nodes reconnect, resubscribe and
        # put their nicks back by themselves
        self.redis.start()
        a.wait_for_log(r"chat shared through Redis at \S+ again", 20)
        b.wait_for_log(r"chat shared through Redis at \S+ again", 20)
        self.assertEqual(eventually(lambda: ask(ann, b"WHO") == b"WHO ann bob"), True)
        self.assertEqual(ask(bob, b"NICK ann"), b"ERROR NICK_TAKEN")
        self.assertRegex(ask(ann, b"SAY back again"), rb"SAID \d+")
        bob.wait_for(b"MSG ann back again")
        self.assertNotIn("Traceback", a.log + b.log)

    def test_a_redis_that_stops_answering_costs_one_reply_timeout(self) -> None:
        # SIGSTOP: the connections stay open and nothing answers, as in a network partition
        a = self.node()
        ann = self.client(a)
        self.assertEqual(ask(ann, b"NICK ann"), b"NICK ann")
        self.redis.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        self.addCleanup(lambda: self.redis.process and self.redis.process.send_signal(signal.SIGCONT))
        started = time.monotonic()
        self.assertEqual(ask(ann, b"SAY anyone?"), b"ERROR CHAT_UNAVAILABLE")
        self.assertLess(time.monotonic() - started, REPLY_TIMEOUT + 3)
        a.wait_for_log("is unreachable")
        started = time.monotonic()
        self.assertEqual(ask(ann, b"SAY anyone now?"), b"ERROR CHAT_UNAVAILABLE")
        self.assertEqual(ask(ann, b"ECHO fine"), b"ECHO fine")
        self.assertLess(time.monotonic() - started, 1)
        self.redis.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        a.wait_for_log(r"chat shared through Redis at \S+ again", 20)
        self.assertRegex(ask(ann, b"SAY back"), rb"SAID \d+")

    def test_a_nick_another_node_holds_in_redis_is_dropped_here_with_a_notice(self) -> None:
        # what a Redis restarted empty can lead to: another node granted the nick meanwhile
        a = self.node()
        ann, other = self.client(a), self.client(a)
        self.assertEqual(ask(ann, b"NICK ann"), b"NICK ann")
        self.assertEqual(ask(other, b"NICK other"), b"NICK other")
        self.assertEqual(ann.line(), b"MSG * other joined")
        self.assertEqual(self.redis.command("SET", "tinytcp:nick:ann", "some-other-node"), b"+OK")
        line = ann.line()
        self.assertRegex(line, rb"^MSG \* ann is now guest\d+$")
        other.wait_for(line)
        a.wait_for_log("nick ann is held on another node now; dropped here")
        self.assertEqual(ask(ann, b"NICK ann"), b"ERROR NICK_TAKEN")

    def test_a_slow_consumer_is_cut_off_not_the_nodes_subscription(self) -> None:
        a = self.node()
        b = self.node("--max-frame", "1024", "--max-pending", "1")
        speaker, slow, reader = self.client(a), self.client(b), self.client(b)
        count, payload = 300, b"z" * 60_000
        got: list[bytes] = []
        reading = threading.Thread(target=lambda: got.extend(reader.lines(count)), daemon=True)
        reading.start()
        for _ in range(count):
            self.assertRegex(ask(speaker, b"SAY " + payload), rb"SAID \d+")
        reading.join(60)
        self.assertEqual(len(got), count)
        self.assertEqual(set(got), {b"MSG " + got[0].split()[1] + b" " + payload})
        b.wait_for_log(r"closing: over 66560 bytes of pushed messages unread \(--max-pending\)")
        # node b still hears node a: its subscription was never the one cut off
        self.assertRegex(ask(speaker, b"SAY still there?"), rb"SAID \d+")
        self.assertEqual(reader.line().split(b" ", 2)[2], b"still there?")
        self.assertNotIn("unreachable", b.log)
        slow.close()

    def test_info_and_metrics_say_the_room_is_shared(self) -> None:
        a = self.node("--metrics-port", "0")
        sock = self.client(a)
        self.assertRegex(ask(sock, b"INFO chat"), rb"^INFO members:1 nicks:0 guests:1 redis:up room_others:\d+$")
        port = a.wait_for_log(r"metrics \(Prometheus, GET /metrics\) listening on tcp:127\.0\.0\.1:(\d+)").group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            self.assertRegex(page.read().decode(), r"(?m)^tinytcp_redis_up 1\.0$")

    def test_stop_says_goodbye_to_the_room_and_leaves_nothing_in_redis(self) -> None:
        a, b = self.node(), self.node()
        leaving, staying = self.client(a), self.client(b)
        self.assertEqual(ask(leaving, b"NICK leaving"), b"NICK leaving")
        self.assertEqual(ask(staying, b"NICK staying"), b"NICK staying")
        status = a.stop()
        self.assertIn(status, (0, -signal.SIGTERM))
        staying.wait_for(b"MSG * leaving left")
        self.assertEqual(ask(staying, b"WHO"), b"WHO staying")
        self.assertEqual(self.redis.command("EXISTS", "tinytcp:nick:leaving"), b":0")
        self.assertEqual(self.redis.command("ZCARD", "tinytcp:nodes"), b":1")


@unittest.skipIf(MISSING is not None, MISSING or "")
class TransportsTests(SynchronousTestCase):
    """Nodes reach one Redis over TCP, a unix socket and TLS, and share one room."""

    def test_plain_unix_socket_and_tls_nodes_chat_together(self) -> None:
        pki = make_pki()
        redis = RunningRedis(unix_socket=True, tls=(pki.server_cert, pki.server_key))
        self.addCleanup(redis.close)
        urls = (
            redis.url,
            f"unix://{redis.socket_path}?db=0",
            f"rediss://localhost:{redis.tls_port}/0?cafile={pki.ca}",
        )
        clients = []
        for url in urls:
            server = RunningServer("--redis", url, "--redis-ttl", TTL, binary=False)
            self.addCleanup(server.stop)
            server.wait_for_log("chat shared through Redis at " + re.escape(url.split("?")[0].split("/0")[0]))
            client = Lines(server.connect())
            self.addCleanup(client.close)
            self.assertTrue(client.line().startswith(b"WELCOME"))
            clients.append(client)
        for number, client in enumerate(clients):
            self.assertEqual(client.ask(b"NICK n%d" % number), b"NICK n%d" % number)
        for number, client in enumerate(clients):
            self.assertRegex(client.ask(b"SAY from %d" % number), rb"SAID \d+")
            for other in clients:
                if other is not client:
                    other.wait_for(b"MSG n%d from %d" % (number, number))
        self.assertEqual(eventually(lambda: clients[2].ask(b"WHO") == b"WHO n0 n1 n2"), True)


@unittest.skipIf(MISSING is not None, MISSING or "")
class WorkersTests(SynchronousTestCase):
    """--workers with --redis: every worker is a node of the one room."""

    def test_clients_of_two_workers_share_one_room(self) -> None:
        redis = RunningRedis()
        self.addCleanup(redis.close)
        server = RunningServer("--workers", "2", "--redis", redis.url, "--redis-ttl", TTL, binary=False)
        self.addCleanup(server.stop)
        server.wait_for_log(r"worker 1 .*chat shared through Redis")
        server.wait_for_log(r"worker 2 .*chat shared through Redis")
        held = one_client_per_worker(server.text_port)
        first, second = Lines(held["1"]), Lines(held["2"])
        self.assertEqual(first.ask(b"NICK one"), b"NICK one")
        self.assertEqual(second.ask(b"NICK one"), b"ERROR NICK_TAKEN")
        self.assertEqual(second.ask(b"NICK two"), b"NICK two")
        self.assertRegex(first.ask(b"SAY across workers"), rb"SAID \d+")
        second.wait_for(b"MSG one across workers")
        self.assertEqual(second.ask(b"WHO"), b"WHO one two")

    def test_workers_behind_a_balancer_read_the_proxy_header(self) -> None:
        redis = RunningRedis()
        self.addCleanup(redis.close)
        server = RunningServer(
            "--workers", "2", "--redis", redis.url, binary=False, port="haproxy:tcp:0:interface=127.0.0.1"
        )
        self.addCleanup(server.stop)
        for worker in (1, 2):
            server.wait_for_log(rf"worker {worker} .*chat shared through Redis")
        served = set()
        for attempt in range(200):
            with socket.create_connection(("127.0.0.1", server.text_port), timeout=10) as sock:
                sock.sendall(b"PROXY TCP4 127.0.0.%d 127.0.0.1 4242 40000\r\n" % (attempt % 200 + 20))
                client = Lines(sock)
                self.assertTrue(client.line().startswith(b"WELCOME"))
                served.add(re.search(rb"worker:(\d)", client.ask(b"INFO server")).group(1))  # type: ignore[union-attr]
            if len(served) == 2:
                break
        self.assertEqual(served, {b"1", b"2"})
        # the workers logged the address the header named, not the connection's own
        server.wait_for_log(r"worker [12] .*127\.0\.0\.2\d:4242 connected \(text\)")
        with socket.create_connection(("127.0.0.1", server.text_port), timeout=10) as sock:
            sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 40000\r\n")
            self.assertTrue(Lines(sock).line().startswith(b"ERROR DENIED"))


@unittest.skipIf(MISSING is not None, MISSING or "")
class SharedAccountsTests(SynchronousTestCase):
    """Logged-in user names are room-wide too: one login per user across the nodes."""

    def test_user_names_are_reserved_and_logged_in_once_room_wide(self) -> None:
        redis = RunningRedis()
        self.addCleanup(redis.close)
        folder = tempfile.mkdtemp(prefix="tinytcp-accounts-")
        accounts = os.path.join(folder, "accounts.sqlite3")
        common = ("--redis", redis.url, "--accounts", accounts, "--bcrypt-rounds", "4")
        a, b = RunningServer(*common, binary=False), RunningServer(*common, binary=False)
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        for server in (a, b):
            server.wait_for_log("chat shared through Redis")
        on_a, on_b = Lines(a.connect()), Lines(b.connect())
        self.addCleanup(on_a.close)
        self.addCleanup(on_b.close)
        on_a.line()  # WELCOME
        on_b.line()
        self.assertEqual(ask(on_a, b"REGISTER carol correct-horse"), b"REGISTER carol")
        # node b's own list of user names was read before carol registered on node a
        self.assertEqual(ask(on_b, b"NICK Carol"), b"ERROR NICK_RESERVED")
        self.assertEqual(ask(on_b, b"LOGIN carol correct-horse"), b"ERROR NICK_TAKEN")
        self.assertEqual(ask(on_a, b"LOGOUT"), b"LOGOUT")
        self.assertEqual(ask(on_b, b"LOGIN carol correct-horse"), b"LOGIN carol")
        self.assertEqual(eventually(lambda: ask(on_a, b"WHO") == b"WHO carol +1"), True)


class StartupTests(SynchronousTestCase):
    """--redis mistakes are one line and exit 1; an unreachable Redis is not a start-up failure."""

    def test_a_bad_url_is_one_line(self) -> None:
        folder = tempfile.mkdtemp(prefix="tinytcp-e2e-")
        for url, why in (
            ("http://127.0.0.1:6379", "expected redis://"),
            ("redis://127.0.0.1:99999", "port"),
            ("redis://127.0.0.1/zero", "database"),
            ("redis://127.0.0.1/0?timeout=3", "unknown parameter"),
        ):
            result = start_twistd("--port", "0", "--binary-port", "none", "--redis", url, workdir=folder)
            self.assertEqual(result.returncode, 1, result.stderr)
            lines = result.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, result.stderr)
            self.assertRegex(lines[0], rf"^twistd tinytcp: --redis: .*{re.escape(why)}")

    def test_an_unreachable_redis_leaves_every_other_command_working(self) -> None:
        port = free_port()  # nothing listens there
        server = RunningServer("--redis", f"redis://127.0.0.1:{port}/0", binary=False)
        self.addCleanup(server.stop)
        with server.connect() as raw:
            sock = Lines(raw)
            sock.line()  # WELCOME
            self.assertEqual(ask(sock, b"ECHO hi"), b"ECHO hi")
            self.assertEqual(ask(sock, b"NICK x"), b"ERROR CHAT_UNAVAILABLE")
            self.assertEqual(ask(sock, b"SAY x"), b"ERROR CHAT_UNAVAILABLE")
            self.assertEqual(ask(sock, b"WHO"), b"ERROR CHAT_UNAVAILABLE")
            self.assertRegex(ask(sock, b"INFO chat"), rb"redis:down")
        self.assertNotIn("Traceback", server.log)
