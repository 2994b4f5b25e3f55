"""--verbose: requests logged as they arrive, what is written logged as it is written
(tinytcp/server/wirelog.py), passwords masked, and nothing wrapped without the flag."""

from __future__ import annotations

from twisted.internet.interfaces import INegotiated
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from tests.helpers import connect, feed, make_server
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.text import TextProtocol
from tinytcp.server.wirelog import WireLog, whole_frames


def logged(events: list[dict]) -> list[str]:
    return [formatEvent(event) for event in events]


class TextTapTests(SynchronousTestCase):
    def test_requests_then_replies_of_a_read_blank_lines_skipped_passwords_masked(self) -> None:
        with capturedLogs() as events:
            protocol, transport = connect(TextProtocol, make_server(verbose=True))
            feed(protocol, b"ECHO hi\r\n\r\nLOGIN ann secret words\nREV abc\n")
        lines = [line for line in logged(events) if " -> " in line or " <- " in line]
        self.assertEqual(
            lines,
            [
                "127.0.0.1:5555 <- b'WELCOME tinytcp 0.1 ready; type HELP'",
                "127.0.0.1:5555 -> b'ECHO hi'",
                "127.0.0.1:5555 -> b'LOGIN ann ***'",
                "127.0.0.1:5555 -> b'REV abc'",
                "127.0.0.1:5555 <- b'ECHO hi'",
                "127.0.0.1:5555 <- b'ERROR UNKNOWN_COMMAND'",
                "127.0.0.1:5555 <- b'REVERSE cba'",
            ],
        )
        self.assertTrue(transport.value().endswith(b"ECHO hi\r\nERROR UNKNOWN_COMMAND\r\nREVERSE cba\r\n"))

    def test_long_lines_are_logged_cut_and_sent_whole(self) -> None:
        line = b"ECHO " + b"y" * 300
        with capturedLogs() as events:
            protocol, transport = connect(TextProtocol, make_server(verbose=True))
            feed(protocol, line + b"\n")
        shown = repr(line[:200])
        self.assertIn(f"127.0.0.1:5555 -> {shown}", logged(events))
        self.assertIn(f"127.0.0.1:5555 <- {shown}", logged(events))
        self.assertTrue(transport.value().endswith(line + b"\r\n"))

    def test_a_pushed_message_is_logged_for_its_receiver(self) -> None:
        server = make_server(verbose=True)
        sender, _ = connect(TextProtocol, server, port=1)
        receiver, transport = connect(TextProtocol, server, port=2)
        with capturedLogs() as events:
            feed(sender, b"NICK ann\nSAY hello\n")
        self.assertIn(b"MSG ann hello\r\n", transport.value())
        self.assertIn("127.0.0.1:2 <- b'MSG ann hello'", logged(events))


class BinaryTapTests(SynchronousTestCase):
    def test_a_frame_across_reads_is_logged_once_whole_and_long_payloads_cut(self) -> None:
        long = b"x" * 300
        stream = encode_frame(1, b"hi") + encode_frame(2, b"abc") + encode_frame(1, long)
        with capturedLogs() as events:
            protocol, transport = connect(BinaryProtocol, make_server(verbose=True))
            feed(protocol, stream[:12])  # the first frame and part of the second
            after_first_read = [line for line in logged(events) if " -> " in line]
            feed(protocol, stream[12:])
        self.assertEqual(after_first_read, ["127.0.0.1:5555 -> frame 1 b'hi'"])
        lines = [line for line in logged(events) if " -> " in line or " <- " in line]
        shown = repr(b"x" * 200)
        self.assertEqual(
            lines,
            [
                "127.0.0.1:5555 -> frame 1 b'hi'",
                "127.0.0.1:5555 <- frame 1 b'hi'",
                "127.0.0.1:5555 -> frame 2 b'abc'",
                f"127.0.0.1:5555 -> frame 1 {shown}",
                "127.0.0.1:5555 <- frame 2 b'cba'",
                f"127.0.0.1:5555 <- frame 1 {shown}",
            ],
        )
        self.assertEqual(transport.value(), encode_frame(1, b"hi") + encode_frame(2, b"cba") + encode_frame(1, long))

    def test_login_passwords_are_masked(self) -> None:
        with capturedLogs() as events:
            protocol, _ = connect(BinaryProtocol, make_server(verbose=True))
            feed(protocol, encode_frame(11, b"ann correct horse"))
        text = "\n".join(logged(events))
        self.assertIn("-> frame 11 b'ann ***'", text)
        self.assertNotIn("correct horse", text)


class WrappingTests(SynchronousTestCase):
    def test_only_a_verbose_connection_writes_through_the_tap(self) -> None:
        for verbose in (False, True):
            protocol, transport = connect(TextProtocol, make_server(verbose=verbose))
            self.assertEqual(isinstance(protocol.transport, WireLog), verbose)
            self.assertEqual(protocol.transport.getPeer(), transport.getPeer())

    def test_the_tap_provides_what_its_transport_provides(self) -> None:
        transport = StringTransport()
        directlyProvides(transport, INegotiated)
        self.assertTrue(INegotiated.providedBy(WireLog(transport, object(), binary=False)))
        self.assertFalse(INegotiated.providedBy(WireLog(StringTransport(), object(), binary=False)))

    def test_whole_frames_stops_at_one_still_arriving(self) -> None:
        data = encode_frame(1, b"a") + encode_frame(2, b"bc") + encode_frame(3, b"def")[:6]
        self.assertEqual(list(whole_frames(data)), [(1, b"a"), (2, b"bc")])
        self.assertEqual(list(whole_frames(data[6:])), [(2, b"bc")])
