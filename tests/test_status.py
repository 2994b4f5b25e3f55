"""INFO: the status command, its sections and counters, in both wire formats."""

from __future__ import annotations

import os
import re

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, feed, make_server
from tests.support import RunningServer, read_lines
from tinytcp import __version__
from tinytcp.ops import status
from tinytcp.protocol import errors
from tinytcp.protocol.core import Core, Session
from tinytcp.protocol.reply import Code, Reply, error
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.state import Server
from tinytcp.server.text import TextProtocol


def fields(payload: bytes) -> dict[str, str]:
    """``key:value key:value`` as a dict, checking every word has that shape."""
    words = payload.decode().split(" ")
    for word in words:
        assert re.fullmatch(r"[a-z_]+:\S+", word), word
    return dict(word.split(":", 1) for word in words)


def info(server: Server, section: str = "") -> dict[str, str]:
    """Ask a fresh text connection for INFO; the connection is closed again after."""
    protocol, transport = connect(TextProtocol, server, port=6000)
    transport.clear()
    feed(protocol, f"INFO {section}\n".encode())
    line = transport.value()
    protocol.connectionLost()
    assert line.startswith(b"INFO ") and line.endswith(b"\r\n") and line.count(b"\r\n") == 1, line
    return fields(line[5:-2])


class CoreInfoTests(SynchronousTestCase):
    def test_a_core_alone_reports_its_chat_room(self) -> None:
        core = Core()
        session = Session()
        core.room.join(session)
        self.assertEqual(core.text_request(session, b"info", None), Reply(Code.INFO, b"members:1 nicks:0 guests:1"))
        chat = Reply(Code.INFO, b"members:1 nicks:0 guests:1")
        self.assertEqual(core.frame_request(session, Code.INFO, b"chat"), chat)
        self.assertEqual(core.text_request(session, b"INFO", b"server"), error(errors.BAD_ARGUMENTS))

    def test_help_knows_info(self) -> None:
        reply = Core().text_request(Session(), b"HELP", b"info")
        self.assertTrue(reply.payload.startswith(b"INFO [section]: "))


class ServerInfoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server(max_line=100)

    def test_every_section_in_order_with_documented_names(self) -> None:
        everything = info(self.server)
        expected: list[str] = []
        for section in status.SECTIONS:
            part = list(info(self.server, section))
            self.assertTrue(part, section)
            expected += part
        self.assertEqual(list(everything), expected)
        with open(os.path.join(os.path.dirname(__file__), "..", "docs", "protocol.md"), encoding="utf-8") as f:
            documented = set(re.findall(r"^\| `([a-z_]+)` +\|", f.read(), re.MULTILINE))
        self.assertEqual(set(everything) - documented, set(), "fields missing from docs/protocol.md §9")

    def test_server_section(self) -> None:
        server = info(self.server, "SERVER")
        self.assertEqual(server["version"], __version__)
        self.assertEqual(server["pid"], str(os.getpid()))
        self.assertEqual(server["reactor"], "twisted.internet.testing.MemoryReactorClock")
        self.assertEqual(server["uptime_seconds"], "0")

    def test_unknown_section_is_bad_arguments(self) -> None:
        protocol, transport = connect(TextProtocol, self.server)
        transport.clear()
        feed(protocol, b"INFO nonsense\n")
        self.assertEqual(transport.value(), b"ERROR BAD_ARGUMENTS\r\n")
        self.assertEqual(self.server.stats.errors[errors.BAD_ARGUMENTS], 1)

    def test_requests_by_command_including_the_fast_echo_paths(self) -> None:
        text, _ = connect(TextProtocol, self.server)
        feed(text, b"ECHO fast\n")  # answered without the core
        feed(text, b"ECHO a\nECHO b\n")  # a read of plain ECHOs: without the core too
        feed(text, b"ECHO  spaced \nTIME\nBOGUS\nECHO \xc3\x28\n")  # the general path
        binary, _ = connect(BinaryProtocol, self.server)
        feed(binary, encode_frame(Code.ECHO, b"x") + encode_frame(Code.WHO, b"") + encode_frame(0x7F, b""))
        stats = info(self.server, "stats")
        # the INFO itself is a request too
        self.assertEqual(
            {key: stats[key] for key in ("requests_total", "requests_echo", "requests_time", "requests_who")},
            {"requests_total": "11", "requests_echo": "5", "requests_time": "1", "requests_who": "1"},
        )
        self.assertEqual((stats["requests_info"], stats["requests_unknown"]), ("1", "3"))
        self.assertEqual(
            (stats["errors_unknown_command"], stats["errors_bad_encoding"], stats["errors_busy"]), ("2", "1", "0")
        )

    def test_counts_held_by_open_connections_are_in_info(self) -> None:
        # past a few hundred requests and errors, a connection folds its counts into the
        # server's in batches; INFO (on another connection) must still see every one
        text, _ = connect(TextProtocol, self.server)
        feed(text, b"BOGUS\n" * 300 + b"ECHO x\n" * 700 + b"ECHO \xc3\x28\n" * 5)
        binary, _ = connect(BinaryProtocol, self.server)
        feed(binary, encode_frame(0x7F, b"") * 260 + encode_frame(Code.REVERSE, b"ab") * 3)
        stats = info(self.server, "stats")
        self.assertEqual(
            {key: stats[key] for key in ("requests_total", "requests_echo", "requests_reverse", "requests_unknown")},
            {"requests_total": "1269", "requests_echo": "700", "requests_reverse": "3", "requests_unknown": "565"},
        )
        self.assertEqual((stats["errors_unknown_command"], stats["errors_bad_encoding"]), ("560", "5"))
        self.assertEqual(info(self.server, "stats")["requests_total"], "1270")  # the first INFO is counted

    def test_clients_by_mode_and_limits(self) -> None:
        connect(TextProtocol, self.server)
        connect(BinaryProtocol, self.server)
        binary, _ = connect(BinaryProtocol, self.server)
        binary.connectionLost()
        long_line, _ = connect(TextProtocol, self.server)
        feed(long_line, b"x" * 200)
        long_line.connectionLost()
        clients = info(self.server, "clients")
        self.assertEqual(
            clients,
            {
                "connected": "3",  # one text, one binary, and the one asking
                "connected_text": "2",
                "connected_binary": "1",
                "connections_total": "5",
                "refused_busy": "0",
                "max_connections": "10000",
                "closed_line_too_long": "1",
                "closed_frame_too_large": "0",
                "closed_idle_timeout": "0",
                "closed_slow_consumer": "0",
            },
        )

    def test_busy_and_backpressure_are_counted(self) -> None:
        server = make_server(max_connections=1)
        first, _ = connect(TextProtocol, server)
        connect(TextProtocol, server)  # refused: BUSY
        first.pauseProducing()
        first.pauseProducing()  # still the same pause
        first.resumeProducing()
        first.connectionLost()
        self.assertEqual(server.stats.errors[errors.BUSY], 1)
        stats = status.collect(server)
        self.assertEqual(stats["clients"]["refused_busy"], 1)
        self.assertEqual(stats["stats"]["backpressure_pauses"], 1)

    def test_binary_info_is_code_9(self) -> None:
        protocol, transport = connect(BinaryProtocol, self.server)
        feed(protocol, encode_frame(9, b"chat"))
        self.assertEqual(transport.value(), encode_frame(9, b"members:1 nicks:0 guests:1"))

    def test_closed_connections_keep_counting(self) -> None:
        protocol, _ = connect(BinaryProtocol, self.server)
        feed(protocol, encode_frame(Code.ECHO, b"a") * 3)
        self.assertEqual(status.collect(self.server)["stats"]["requests_echo"], 3)
        protocol.connectionLost()
        self.assertEqual(status.collect(self.server)["stats"]["requests_echo"], 3)

    def test_wire_bytes_come_from_the_tcp_transport_even_under_tls(self) -> None:
        class Counting(StringTransport):
            bytes_in = 10
            bytes_out = 20

        class TLSLike:
            transport = Counting(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))

        self.assertEqual(status.wire_bytes(TLSLike()), (10, 20))
        self.assertEqual(status.wire_bytes(StringTransport()), (0, 0))


class EndToEndInfoTests(SynchronousTestCase):
    def test_info_over_a_real_server_counts_wire_bytes(self) -> None:
        server = RunningServer()
        self.addCleanup(server.stop)
        with server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"ECHO hello\n")
            self.assertEqual(read_lines(sock, 1), [b"ECHO hello"])
            sock.sendall(b"INFO stats\n")
            (line,) = read_lines(sock, 1)
        stats = fields(line[len(b"INFO ") :])
        self.assertEqual(stats["requests_total"], "2")
        self.assertEqual(stats["bytes_in"], str(len(b"ECHO hello\nINFO stats\n")))
        self.assertGreater(int(stats["bytes_out"]), len(b"WELCOME ECHO hello\r\n"))
        with server.connect("binary") as sock:
            sock.sendall(encode_frame(9, b"clients"))
            header = sock.recv(5)
            self.assertEqual(header[0], 9)
