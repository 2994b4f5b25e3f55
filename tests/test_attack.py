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
