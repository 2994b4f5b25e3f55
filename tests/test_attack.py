"""Attacks on the real server: floods, slow readers, aborts, crowds, limits and shutdown.

Each test is bounded in count and time.  Set TINYTCP_SOAK=N to multiply the sizes by N
for a longer soak (see README); the default sizes are what CI runs.
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import signal
import socket
import struct
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.support import RunningServer, read_lines, read_until_closed
from tinytcp.protocol.wire import encode_frame

SOAK = max(1, int(os.environ.get("TINYTCP_SOAK", "1")))
MiB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def echo_line(i: int) -> bytes:
    return b"ECHO %010d" % i + b"x" * 989


def wait_until_stalled(progress: list[int], timeout: float = 60) -> None:
    """Wait until a writer thread makes no progress for a second (the server stopped reading)."""
    last, deadline = [-1], time.monotonic() + timeout
    while progress != last and time.monotonic() < deadline:
        last = list(progress)
        time.sleep(1.0)


class BackpressureTests(SynchronousTestCase):
    def test_client_that_never_reads_does_not_grow_server_memory(self) -> None:
        server = RunningServer("--idle-timeout", "0")
        self.addCleanup(server.stop)
        sock = server.connect(timeout=60)
        self.addCleanup(sock.close)
        read_lines(sock, 1)
        before = rss(server.process.pid)
        total = 200 * MiB * SOAK
        count = total // (len(echo_line(0)) + 1)
        sent = [0]

        def write() -> None:
            batch = 256
            for start in range(0, count, batch):
                stop = min(count, start + batch)
                sock.sendall(b"".join(echo_line(i) + b"\n" for i in range(start, stop)))
                sent[0] = stop

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_until_stalled(sent)
        self.assertLess(sent[0], count, "the writer was never held back")
        grown = rss(server.process.pid) - before
        self.assertLess(grown, 64 * MiB, f"server RSS grew by {grown / MiB:.1f} MiB")

        buffer = b""
        received = 0
        deadline = time.monotonic() + 120 * SOAK
        while received < count:
            self.assertLess(time.monotonic(), deadline)
            chunk = sock.recv(1 << 20)
            self.assertTrue(chunk, f"connection closed after {received} replies")
            buffer += chunk
            lines = buffer.split(b"\r\n")
            buffer = lines.pop()
            for line in lines:
                self.assertEqual(line, echo_line(received))
                received += 1
        writer.join(10)
        self.assertEqual(buffer, b"")
        self.assertEqual(received, count)


class ShutdownLosesNothingTests(SynchronousTestCase):
    def test_every_request_received_before_sigterm_is_answered(self) -> None:
        """Pipelining clients that have not read yet, so the server holds unread requests."""
        server = RunningServer()
        text = server.connect(timeout=30)
        binary = server.connect("binary", timeout=30)
        self.addCleanup(text.close)
        self.addCleanup(binary.close)
        read_lines(text, 1)
        count = 20_000 * SOAK
        streams = {
            text: b"".join(echo_line(i) + b"\n" for i in range(count)),
            binary: b"".join(encode_frame(1, echo_line(i)) for i in range(count)),
        }
        progress = [0, 0]

        def write(index: int, sock: socket.socket) -> None:
            data = memoryview(streams[sock])
            for offset in range(0, len(data), 65536):
                sock.sendall(data[offset : offset + 65536])
                progress[index] = offset

        writers = [threading.Thread(target=write, args=pair, daemon=True) for pair in enumerate(streams)]
        for writer in writers:
            writer.start()
        wait_until_stalled(progress)
        self.assertTrue(all(writer.is_alive() for writer in writers), "the server read everything before SIGTERM")
        server.process.send_signal(signal.SIGTERM)
        text_bytes = read_until_closed(text)
        binary_bytes = read_until_closed(binary)
        self.assertEqual(text_bytes, b"".join(echo_line(i) + b"\r\n" for i in range(count)) + b"BYE\r\n")
        self.assertEqual(binary_bytes, streams[binary] + encode_frame(3, b"BYE"))
        status = server.stop()
        self.assertIn(status, (0, -signal.SIGTERM))
        self.assertNotIn("Traceback", server.log)


class AbruptDisconnectTests(SynchronousTestCase):
    def test_connect_abort_cycles_leak_nothing(self) -> None:
        server = RunningServer()
        self.addCleanup(server.stop)
        linger = struct.pack("ii", 1, 0)
        partial = {
            "text": [b"ECHO half a li", b"", b"\xff\xfa\x18", b"QUIT\nECHO"],
            "binary": [b"\x01\x00\x00\x10\x00abc", b"\x01\x00", b"", b"\x03\x00\x00\x00\x00"],
        }

        def cycles(n: int, offset: int) -> None:
            for i in range(offset, offset + n):
                mode = "text" if i % 2 else "binary"
                sock = socket.create_connection(("127.0.0.1", server.ports[mode]), timeout=10)
                sock.sendall(partial[mode][i // 2 % 4])
                if i % 5 == 0:
                    sock.shutdown(socket.SHUT_WR)
                else:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                sock.close()

        def settled(expected: int) -> None:
            deadline = time.monotonic() + 60
            while True:
                log = server.log
                opened = len(re.findall(r" connected \((?:text|binary)\)", log))
                closed = len(re.findall(r" disconnected after ", log))
                if opened == closed == expected:
                    return
                self.assertLess(time.monotonic(), deadline, f"{opened} opened, {closed} closed, {expected} made")
                time.sleep(0.2)

        warm = 1000
        cycles(warm, 0)
        settled(warm)
        before = rss(server.process.pid)
        total = 10_000 * SOAK
        cycles(total - warm, warm)
        settled(total)
        grown = rss(server.process.pid) - before
        self.assertLess(grown, 4 * MiB, f"RSS grew by {grown / MiB:.2f} MiB over {total - warm} cycles")
        for bad in ("Traceback", "Unhandled", "CRITICAL"):
            self.assertNotIn(bad, server.log)
        with server.connect() as sock:
            self.assertEqual(read_lines(sock, 1)[0][:7], b"WELCOME")


MIXED = [
    (b"ECHO hello %d", b"ECHO hello %d"),
    (b"REVERSE abc%d", None),
    (b"HELP", b"HELP TIME ECHO REVERSE HELP NICK SAY WHO INFO QUIT"),
    (b"TIME", None),
]
TIME_REPLY = re.compile(rb"^TIME \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def text_request(i: int) -> tuple[bytes, bytes | None]:
    request, reply = MIXED[i % 4]
    if b"%d" in request:
        request = request % i
    if reply is not None and b"%d" in reply:
        reply = reply % i
    if request.startswith(b"REVERSE"):
        reply = b"REVERSE " + request[8:][::-1]
    return request, reply


class CrowdTests(SynchronousTestCase):
    def test_a_thousand_clients_with_a_hundred_mixed_requests_each(self) -> None:
        clients, per_client = 1000, 100 * SOAK
        raise_fd_limit(clients + 200)
        server = RunningServer("--max-connections", str(clients + 10))
        self.addCleanup(server.stop)
        selector = selectors.DefaultSelector()
        state = {}
        for n in range(clients):
            mode = "text" if n % 2 else "binary"
            sock = socket.create_connection(("127.0.0.1", server.ports[mode]), timeout=10)
            sock.setblocking(False)
            self.addCleanup(sock.close)
            requests = [text_request(n * per_client + i) for i in range(per_client)]
            if mode == "text":
                wire = b"".join(r + b"\n" for r, _ in requests)
            else:
                codes = {b"ECHO": 1, b"REVERSE": 2, b"HELP": 5, b"TIME": 4}
                wire = b"".join(encode_frame(codes[r.split(b" ")[0]], r.partition(b" ")[2]) for r, _ in requests)
            state[sock] = {
                "mode": mode,
                "out": wire,
                "in": b"",
                "expect": [e for _, e in requests],
                "banner": mode == "text",
            }
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        done = 0
        deadline = time.monotonic() + 120
        while done < clients:
            self.assertLess(time.monotonic(), deadline, f"{done} of {clients} clients answered")
            for key, events in selector.select(timeout=1):
                sock, st = key.fileobj, state[key.fileobj]
                if events & selectors.EVENT_WRITE and st["out"]:
                    sent = sock.send(st["out"])
                    st["out"] = st["out"][sent:]
                    if not st["out"]:
                        selector.modify(sock, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    chunk = sock.recv(1 << 16)
                    self.assertTrue(chunk, "server closed a client")
                    st["in"] += chunk
                    if self.check(st):
                        selector.unregister(sock)
                        done += 1
        self.assertEqual(done, clients)

    def check(self, st: dict) -> bool:
        """Verify the replies complete so far; True once all are in."""
        data = st["in"]
        if st["mode"] == "text":
            lines = data.split(b"\r\n")
            if st["banner"] and len(lines) > 1:
                self.assertTrue(lines[0].startswith(b"WELCOME "))
                lines.pop(0)
                st["banner"] = False
            elif st["banner"]:
                return False
            st["in"] = lines.pop()
            replies = lines
        else:
            replies, offset = [], 0
            words = {1: b"ECHO", 2: b"REVERSE", 4: b"TIME", 5: b"HELP"}
            while len(data) - offset >= 5:
                code, length = struct.unpack_from(">BI", data, offset)
                if len(data) - offset - 5 < length:
                    break
                replies.append(words[code] + b" " + data[offset + 5 : offset + 5 + length])
                offset += 5 + length
            st["in"] = data[offset:]
        for reply in replies:
            expected = st["expect"].pop(0)
            if expected is None and reply.startswith(b"TIME"):
                self.assertRegex(reply, TIME_REPLY)
            else:
                self.assertEqual(reply, expected)
        return not st["expect"]


class LimitEndToEndTests(SynchronousTestCase):
    def test_idle_clients_are_told_and_closed(self) -> None:
        server = RunningServer("--idle-timeout", "0.5")
        self.addCleanup(server.stop)
        with server.connect() as text, server.connect("binary") as binary:
            self.assertEqual(read_until_closed(text).split(b"\r\n")[1:], [b"ERROR IDLE_TIMEOUT", b""])
            self.assertEqual(read_until_closed(binary), b"\xff\x00\x00\x00\x0cIDLE_TIMEOUT")
            port = text.getsockname()[1]
        server.wait_for_log(rf"127\.0\.0\.1:{port}: closing: idle for 0\.5s \(--idle-timeout\)")

    def test_connection_limit(self) -> None:
        server = RunningServer("--max-connections", "2")
        self.addCleanup(server.stop)
        with server.connect() as first, server.connect("binary") as second:
            read_lines(first, 1)
            server.wait_for_log(r"connected \(binary\)")
            with server.connect() as third:
                self.assertEqual(read_until_closed(third), b"ERROR BUSY\r\n")
            first.sendall(b"ECHO still here\n")
            self.assertEqual(read_lines(first, 1), [b"ECHO still here"])
            second.sendall(encode_frame(1, b"me too"))
            self.assertEqual(second.recv(100), encode_frame(1, b"me too"))
        server.wait_for_log(r"closing: refused, 2 connections open \(--max-connections\)")

    def test_line_too_long(self) -> None:
        server = RunningServer("--max-line", "1000")
        self.addCleanup(server.stop)
        with server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"ECHO ok\n" + b"y" * 2000)
            self.assertEqual(read_until_closed(sock), b"ECHO ok\r\nERROR LINE_TOO_LONG\r\n")
        server.wait_for_log(r"closing: line longer than --max-line \(1000 bytes\)")

    def test_frame_too_large(self) -> None:
        server = RunningServer("--max-frame", "1000")
        self.addCleanup(server.stop)
        with server.connect("binary") as sock:
            sock.sendall(encode_frame(1, b"x" * 1000) + b"\x01\x00\x00\x03\xe9")
            self.assertEqual(
                read_until_closed(sock), encode_frame(1, b"x" * 1000) + encode_frame(0xFF, b"FRAME_TOO_LARGE")
            )
        server.wait_for_log(r"closing: frame of 1001 bytes is over --max-frame \(1000\)")


def send_while_open(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` from a thread; the server may stop reading (and close) before it is all sent."""
    try:
        sock.sendall(data)
    except OSError:
        return


def nick_clients(server: RunningServer, count: int) -> list[socket.socket]:
    """``count`` text clients that took a nick (the test closes them)."""
    clients = []
    for i in range(count):
        sock = server.connect()
        sock.sendall(b"NICK member%d\n" % i)
        read_until(sock, b"NICK member%d\r\n" % i)
        clients.append(sock)
    return clients


def read_until(sock: socket.socket, wanted: bytes) -> bytes:
    """Read until ``wanted`` has arrived (pushed chat messages may come first)."""
    data = b""
    while wanted not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {wanted!r}: {data[-200:]!r}")
        data += chunk
    return data


def never_reading_client(server: RunningServer, mode: str = "text") -> socket.socket:
    """A client with a small receive buffer that will never read (so the server's writes back up)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.ports[mode]))
    return sock


class HostileClientTests(SynchronousTestCase):
    """Issue 12's cases against the real server: each one cost memory, time or a slot before."""

    def test_who_flood_from_a_client_that_never_reads(self) -> None:
        server = RunningServer()
        self.addCleanup(server.stop)
        members = nick_clients(server, 200)
        for sock in members:
            self.addCleanup(sock.close)
        before = rss(server.process.pid)
        hostile = never_reading_client(server)
        self.addCleanup(hostile.close)
        hostile.sendall(b"WHO\n" * (64 * 1024 // 4))
        time.sleep(1.0)
        grown = rss(server.process.pid) - before
        self.assertLess(grown, 16 * MiB, f"server RSS grew by {grown / MiB:.1f} MiB")
        # the server still answers everyone else at once
        members[-1].sendall(b"ECHO still here\n")
        read_until(members[-1], b"ECHO still here\r\n")

    def test_say_flood_into_a_room_of_500_leaves_a_bystander_responsive(self) -> None:
        raise_fd_limit(2048)
        server = RunningServer()
        self.addCleanup(server.stop)
        room = []
        for _ in range(500):
            sock = server.connect()
            room.append(sock)
            self.addCleanup(sock.close)
        bystander = server.connect()
        self.addCleanup(bystander.close)
        read_lines(bystander, 1)
        flooder = server.connect()
        self.addCleanup(flooder.close)
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                try:
                    flooder.sendall(b"SAY x\n" * 10_000)
                    while flooder.recv(1 << 20, socket.MSG_DONTWAIT):  # its replies, or it would be held back
                        pass
                except BlockingIOError:
                    continue
                except OSError:
                    return

        flooding = threading.Thread(target=flood, daemon=True)
        flooding.start()
        self.addCleanup(stop.set)
        times = []
        for i in range(200):
            started = time.perf_counter()
            bystander.sendall(b"ECHO ping %d\n" % i)
            read_until(bystander, b"ECHO ping %d\r\n" % i)  # the flooder's MSGs come in between
            times.append(time.perf_counter() - started)
            time.sleep(0.005)
        stop.set()
        times.sort()
        p99 = times[int(len(times) * 0.99) - 1]
        self.assertLess(p99, 0.050, f"bystander p99 {p99 * 1000:.1f} ms, median {times[100] * 1000:.1f} ms")

    def test_a_client_the_server_closes_frees_its_slot_even_if_it_never_reads(self) -> None:
        server = RunningServer("--max-connections", "1", "--idle-timeout", "1", "--shutdown-grace", "1")
        self.addCleanup(server.stop)
        hostile = never_reading_client(server)
        self.addCleanup(hostile.close)
        flood = b"HELP REV\n" * 50_000  # replies back up: the close cannot flush them
        threading.Thread(target=lambda: send_while_open(hostile, flood), daemon=True).start()
        server.wait_for_log(r"closing: idle for 1s")
        server.wait_for_log(r"aborting: still open 1s after closing", timeout=5)
        server.wait_for_log(r"disconnected after .*aborted", timeout=5)
        newcomer = server.connect()
        self.addCleanup(newcomer.close)
        self.assertTrue(read_lines(newcomer, 1)[0].startswith(b"WELCOME"))

    def test_a_client_flooding_during_the_shutdown_drain_is_held_back(self) -> None:
        server = RunningServer("--shutdown-grace", "3")
        self.addCleanup(server.stop)
        hostile = never_reading_client(server, "binary")
        self.addCleanup(hostile.close)
        frame = encode_frame(1, b"x" * 1000) * 64
        sending = threading.Event()

        def flood() -> None:
            try:
                while True:
                    hostile.sendall(frame)
                    sending.set()
            except OSError:
                return

        threading.Thread(target=flood, daemon=True).start()
        sending.wait(5)
        time.sleep(0.5)
        before = rss(server.process.pid)
        server.process.send_signal(signal.SIGTERM)
        peak = before
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and server.process.poll() is None:
            try:
                peak = max(peak, rss(server.process.pid))
            except (AssertionError, FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.1)
        self.assertLess(peak - before, 16 * MiB, f"server RSS grew by {(peak - before) / MiB:.1f} MiB while draining")
        server.process.wait(10)  # aborted after the grace: the server stops by itself
        self.assertIn(server.stop(), (0, -signal.SIGTERM))
        self.assertNotIn("Traceback", server.log)

    def test_a_flood_of_bad_lines_writes_a_few_lines_of_log(self) -> None:
        server = RunningServer()
        self.addCleanup(server.stop)
        sock = server.connect()
        self.addCleanup(sock.close)
        read_lines(sock, 1)
        logged = len(server.log)
        count = 200 * 1024 // 6
        sock.sendall(b"BOGUS\n" * count)
        received = 0
        while received < count:
            received += sock.recv(1 << 20).count(b"\r\n")
        sock.close()
        server.wait_for_log(r"more errors not logged")
        grown = len(server.log) - logged
        self.assertLess(grown, 2048, server.log[logged:])
