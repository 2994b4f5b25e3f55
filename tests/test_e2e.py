"""The real ``twistd tinytcp`` on loopback ports, spoken to over raw sockets."""

from __future__ import annotations

import os
import signal
import socket
import struct

from twisted.trial.unittest import SynchronousTestCase

from tests.support import RunningServer, read_lines, read_until_closed
from tinytcp.protocol.wire import encode_frame


def recv_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    data = b""
    out: list[tuple[int, bytes]] = []
    while len(out) < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError(f"closed after {out!r}")
        data += chunk
        while len(data) >= 5:
            code, length = struct.unpack_from(">BI", data)
            if len(data) < 5 + length:
                break
            out.append((code, data[5 : 5 + length]))
            data = data[5 + length :]
    return out


class EndToEndTests(SynchronousTestCase):
    """A fresh server per test (trial has no setUpClass); one starts in well under a second."""

    def setUp(self) -> None:
        self.server = RunningServer("--banner", "e2e ready")
        self.addCleanup(self.server.stop)

    def test_welcome_then_a_pipelined_nc_style_session(self) -> None:
        with self.server.connect() as sock:
            self.assertEqual(read_lines(sock, 1), [b"WELCOME e2e ready"])
            sock.sendall(b"ECHO one\nrev abc\n\nhelp\nBOGUS\nQUIT\nECHO never\n")
            self.assertEqual(
                read_until_closed(sock),
                b"ECHO one\r\nREVERSE cba\r\nHELP TIME ECHO REVERSE HELP NICK SAY WHO INFO QUIT\r\n"
                b"ERROR UNKNOWN_COMMAND\r\nBYE\r\n",
            )

    def test_telnet_style_crlf_with_negotiation(self) -> None:
        with self.server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1fECHO hi there\r\nTIME\r\n")
            echo, time = read_lines(sock, 2)
            self.assertEqual(echo, b"ECHO hi there")
            self.assertRegex(time.decode(), r"^TIME \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")

    def test_request_split_across_segments(self) -> None:
        with self.server.connect() as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            read_lines(sock, 1)
            for byte in "REVERSE ab👍🏽\r\n".encode():
                sock.sendall(bytes([byte]))
            self.assertEqual(read_lines(sock, 1), ["REVERSE 👍🏽ba".encode()])

    def test_bad_encoding_keeps_the_connection(self) -> None:
        with self.server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"ECHO \xc3\x28\nECHO ok\n")
            self.assertEqual(read_lines(sock, 2), [b"ERROR BAD_ENCODING", b"ECHO ok"])

    def test_many_pipelined_requests_answered_in_order(self) -> None:
        with self.server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"".join(b"ECHO %d\n" % i for i in range(5000)))
            self.assertEqual(read_lines(sock, 5000), [b"ECHO %d" % i for i in range(5000)])

    def test_binary_round_trips(self) -> None:
        with self.server.connect("binary") as sock:
            sock.sendall(b"\x01\x00\x00\x00\x02hi" + encode_frame(2, "ab👍🏽".encode()) + encode_frame(0x7F, b""))
            self.assertEqual(recv_frames(sock, 3), [(1, b"hi"), (2, "👍🏽ba".encode()), (0xFF, b"UNKNOWN_COMMAND")])
            sock.sendall(b"\x03\x00\x00\x00\x00")
            self.assertEqual(read_until_closed(sock), b"\x03\x00\x00\x00\x03BYE")

    def test_text_and_binary_clients_served_at_once(self) -> None:
        with self.server.connect("text") as text, self.server.connect("binary") as binary:
            read_lines(text, 1)
            for i in range(50):
                text.sendall(b"ECHO t%d\n" % i)
                binary.sendall(encode_frame(1, b"b%d" % i))
                self.assertEqual(read_lines(text, 1), [b"ECHO t%d" % i])
                self.assertEqual(recv_frames(binary, 1), [(1, b"b%d" % i)])

    def test_connections_are_logged(self) -> None:
        with self.server.connect() as sock:
            read_lines(sock, 1)
            port = sock.getsockname()[1]
            sock.sendall(b"QUIT\n")
            read_until_closed(sock)
        self.server.wait_for_log(rf"127\.0\.0\.1:{port} connected \(text\)")
        self.server.wait_for_log(rf"127\.0\.0\.1:{port} disconnected after [\d.]+s, 1 request \(")

    def test_bare_port_numbers_listen_on_loopback(self) -> None:
        self.assertIn("text mode listening on tcp:127.0.0.1:", self.server.log)

    def test_runs_on_tinytcps_reactor_by_default(self) -> None:
        self.server.wait_for_log(r"reactor class: tinytcp\.server\.reactor\.EPollReactor\.")


class ReactorChoiceTests(SynchronousTestCase):
    def test_a_reactor_named_to_twistd_is_kept(self) -> None:
        server = RunningServer(twistd_args=("--reactor=poll",))
        self.addCleanup(server.stop)
        server.wait_for_log(r"reactor class: twisted\.internet\.pollreactor\.PollReactor\.")
        with server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"ECHO on poll\n")
            self.assertEqual(read_lines(sock, 1), [b"ECHO on poll"])
        with server.connect("binary") as sock:
            sock.sendall(encode_frame(1, b"x" * 300_000))
            self.assertEqual(recv_frames(sock, 1), [(1, b"x" * 300_000)])

    def test_tinytcps_reactor_by_name(self) -> None:
        server = RunningServer(twistd_args=("--reactor=tinytcp",))
        self.addCleanup(server.stop)
        server.wait_for_log(r"reactor class: tinytcp\.server\.reactor\.EPollReactor\.")


class ShutdownTests(SynchronousTestCase):
    def check_clean_stop(self, sig: int, statuses: tuple[int, ...] | None = None) -> RunningServer:
        """Answered, BYE to both modes, no traceback; exit status 0 or by the signal (twistd re-raises it)."""
        server = RunningServer()
        text = server.connect()
        binary = server.connect("binary")
        self.addCleanup(text.close)
        self.addCleanup(binary.close)
        read_lines(text, 1)
        text.sendall(b"ECHO before\n")
        self.assertEqual(read_lines(text, 1), [b"ECHO before"])
        server.wait_for_log(r"connected \(binary\)")
        status = server.stop(sig)
        self.assertEqual(read_until_closed(text), b"BYE\r\n")
        self.assertEqual(read_until_closed(binary), b"\x03\x00\x00\x00\x03BYE")
        self.assertIn(status, statuses or (0, -sig))
        self.assertNotIn("Traceback", server.log)
        self.assertIn("Server Shut Down.", server.log)
        return server

    def test_sighup_stops_cleanly_like_sigterm_with_status_0(self) -> None:
        server = self.check_clean_stop(signal.SIGHUP, statuses=(0,))
        self.assertIn("SIGHUP: stopping cleanly", server.log)

    def test_sigterm(self) -> None:
        self.check_clean_stop(signal.SIGTERM)

    def test_sigint(self) -> None:
        self.check_clean_stop(signal.SIGINT)


class PortTests(SynchronousTestCase):
    def test_several_text_ports_and_a_bare_number(self) -> None:
        server = RunningServer("--port", "0", binary=False)
        self.addCleanup(server.stop)
        ports = server.ports_of("text", 2)
        self.assertEqual(len(set(ports)), 2)
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                self.assertEqual(read_lines(sock, 1)[0][:8], b"WELCOME ")

    def test_tls_endpoints_serve_both_modes(self) -> None:
        import ssl

        import twisted.test

        # the key and self-signed certificate Twisted ships for its own tests
        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        tls = f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}"
        server = RunningServer("--port", tls, "--binary-port", tls)
        self.addCleanup(server.stop)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        text_port = server.ports_of("text", 2)[1]
        binary_port = server.ports_of("binary", 2)[1]
        raw = socket.create_connection(("127.0.0.1", text_port), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"ECHO over TLS\nQUIT\n")
            self.assertEqual(read_lines(sock, 3), [b"WELCOME tinytcp 0.1 ready; type HELP", b"ECHO over TLS", b"BYE"])
        raw = socket.create_connection(("127.0.0.1", binary_port), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            payload = bytes(range(256)) * 4096  # 1 MiB, in many TLS records and reads
            sock.sendall(encode_frame(1, payload) * 2)
            self.assertEqual(recv_frames(sock, 2), [(1, payload), (1, payload)])
