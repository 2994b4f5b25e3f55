"""Text mode, byte for byte, on a StringTransport."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, feed, make_server
from tinytcp.protocol.core import Session
from tinytcp.protocol.telnet import WILL_TIMING_MARK
from tinytcp.protocol.wire import encode_text_reply, parse_text_request
from tinytcp.server.text import TextProtocol

REPLY_WORDS = {b"ECHO", b"REVERSE", b"TIME", b"HELP", b"NICK", b"SAID", b"WHO", b"BYE", b"ERROR"}
WELCOME = b"WELCOME tinytcp 0.1 ready; type HELP\r\n"
SESSION = b"TIME\nECHO  hello  world \r\nrev ab\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd\n\nHELP\r\nnope\nECHO\n"
SESSION_REPLIES = (
    b"TIME 2025-09-12T17:24:13-05:00\r\n"
    b"ECHO hello  world\r\n"
    b"REVERSE \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbdba\r\n"
    b"HELP TIME ECHO REVERSE HELP NICK SAY WHO INFO QUIT\r\n"
    b"ERROR UNKNOWN_COMMAND\r\n"
    b"ERROR BAD_ARGUMENTS\r\n"
)


class TextProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server()
        self.protocol, self.transport = connect(TextProtocol, self.server)

    def replies(self) -> bytes:
        value = self.transport.value()
        self.assertTrue(value.startswith(WELCOME))
        return value[len(WELCOME) :]

    def test_welcome_banner_on_connect(self) -> None:
        self.assertEqual(self.transport.value(), WELCOME)

    def test_custom_banner(self) -> None:
        _, transport = connect(TextProtocol, make_server(banner="hi there"))
        self.assertEqual(transport.value(), b"WELCOME hi there\r\n")

    def test_pipelined_session_in_one_segment(self) -> None:
        feed(self.protocol, SESSION)
        self.assertEqual(self.replies(), SESSION_REPLIES)

    def test_session_split_byte_by_byte(self) -> None:
        feed(self.protocol, SESSION, step=1)
        self.assertEqual(self.replies(), SESSION_REPLIES)

    def test_lf_and_crlf(self) -> None:
        feed(self.protocol, b"ECHO a\nECHO b\r\n")
        self.assertEqual(self.replies(), b"ECHO a\r\nECHO b\r\n")

    def test_blank_lines_get_no_reply(self) -> None:
        feed(self.protocol, b"\n\r\n  \t \r\n")
        self.assertEqual(self.replies(), b"")

    def test_incomplete_line_waits(self) -> None:
        feed(self.protocol, b"ECHO waiting")
        self.assertEqual(self.replies(), b"")
        feed(self.protocol, b"\n")
        self.assertEqual(self.replies(), b"ECHO waiting\r\n")

    def test_bad_encoding_keeps_connection_usable(self) -> None:
        feed(self.protocol, b"ECHO \xc3\x28\nECHO \xe2\x82\nECHO fine\n")
        self.assertEqual(self.replies(), b"ERROR BAD_ENCODING\r\nERROR BAD_ENCODING\r\nECHO fine\r\n")
        self.assertFalse(self.transport.disconnecting)

    def test_bad_encoding_in_the_command_word(self) -> None:
        feed(self.protocol, b"\xe9CHO x\n")
        self.assertEqual(self.replies(), b"ERROR BAD_ENCODING\r\n")

    def test_telnet_negotiation_is_stripped(self) -> None:
        feed(self.protocol, b"\xff\xfd\x03\xff\xfb\x18EC\xff\xf1HO hi\r\n\xff\xf4")
        self.assertEqual(self.replies(), b"ECHO hi\r\n")

    def test_telnet_timing_mark_is_answered_so_telnet_shows_output_again(self) -> None:
        # what netkit telnet sends for "ab" + U+1F3FD: it takes 0x8F for Ctrl+O
        feed(self.protocol, b"ECHO \xf0\x9f\xff\xf5\xff\xfd\x06\xbd\r\nECHO ok\r\n")
        self.assertEqual(self.replies(), b"\xff\xfb\x06ERROR BAD_ENCODING\r\nECHO ok\r\n")

    def test_a_0xff_byte_is_telnet_not_text(self) -> None:
        # IAC DONT takes the next byte (here the blank) as its option
        feed(self.protocol, b"ECHO \xff\xfe ok\n")
        self.assertEqual(self.replies(), b"ECHO ok\r\n")

    def test_telnet_sequence_split_across_reads(self) -> None:
        feed(self.protocol, b"ECHO a\xff\xfa\x18\x00xterm\xff\xf0b\r\n", step=1)
        self.assertEqual(self.replies(), b"ECHO ab\r\n")

    def test_quit_says_bye_then_closes_and_ignores_the_rest(self) -> None:
        feed(self.protocol, b"ECHO 1\nQUIT\nECHO 2\n")
        self.assertEqual(self.replies(), b"ECHO 1\r\nBYE\r\n")
        self.assertTrue(self.transport.disconnecting)
        feed(self.protocol, b"ECHO 3\n")
        self.assertEqual(self.replies(), b"ECHO 1\r\nBYE\r\n")

    def test_exit_alias(self) -> None:
        feed(self.protocol, b"exit\r\n")
        self.assertEqual(self.replies(), b"BYE\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_format_strings_are_echoed_verbatim(self) -> None:
        feed(self.protocol, b"ECHO %s%n {0!r} ${HOME} `id`\n")
        self.assertEqual(self.replies(), b"ECHO %s%n {0!r} ${HOME} `id`\r\n")


class LineLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server(max_line=100)
        self.protocol, self.transport = connect(TextProtocol, self.server)
        self.transport.clear()

    def test_line_at_the_limit_is_served(self) -> None:
        feed(self.protocol, b"ECHO " + b"x" * 95 + b"\n")
        self.assertEqual(self.transport.value(), b"ECHO " + b"x" * 95 + b"\r\n")

    def test_the_cr_of_crlf_does_not_count(self) -> None:
        line = b"ECHO " + b"x" * 95
        feed(self.protocol, line + b"\r\n" + line + b"\r", step=1)
        feed(self.protocol, b"\n")
        self.assertEqual(self.transport.value(), (line + b"\r\n") * 2)
        feed(self.protocol, line + b"x\r\n")
        self.assertTrue(self.transport.value().endswith(b"ERROR LINE_TOO_LONG\r\n"))

    def test_long_line_in_one_read(self) -> None:
        feed(self.protocol, b"ECHO ok\n" + b"x" * 101 + b"\nECHO never\n")
        self.assertEqual(self.transport.value(), b"ECHO ok\r\nERROR LINE_TOO_LONG\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_long_line_trickling_in_stays_bounded(self) -> None:
        for _ in range(150):
            feed(self.protocol, b"y")
            self.assertLessEqual(len(self.protocol.lines.held), 102)
        self.assertEqual(self.transport.value(), b"ERROR LINE_TOO_LONG\r\n")
        self.assertTrue(self.transport.disconnecting)


class LoggingTests(SynchronousTestCase):
    def test_connection_open_close_and_errors_are_logged(self) -> None:
        server = make_server()
        with capturedLogs() as events:
            protocol, transport = connect(TextProtocol, server, port=4242)
            feed(protocol, b"FLY\nQUIT\n")
            protocol.connectionLost()
        text = [e["log_format"].format(**e) for e in events]
        self.assertIn("127.0.0.1:4242 connected (text)", text)
        self.assertIn("127.0.0.1:4242: ERROR UNKNOWN_COMMAND", text)
        self.assertIn("127.0.0.1:4242: closing: client said QUIT", text)
        self.assertTrue(any(t.startswith("127.0.0.1:4242 disconnected after") and "2 requests" in t for t in text))
        self.assertEqual(server.connections, set())

    def test_messages_are_logged_only_when_verbose(self) -> None:
        for verbose in (False, True):
            with capturedLogs() as events:
                protocol, _ = connect(TextProtocol, make_server(verbose=verbose))
                feed(protocol, b"ECHO secret\n")
            logged = any("secret" in e["log_format"].format(**e) for e in events)
            self.assertEqual(logged, verbose)


class SplitPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(1, len(SESSION)), max_size=20))
    def test_any_split_of_a_pipelined_stream_gives_the_same_replies(self, cuts: list[int]) -> None:
        protocol, transport = connect(TextProtocol, make_server())
        points = sorted(set(cuts))
        for start, stop in zip([0, *points], [*points, len(SESSION)], strict=True):
            protocol.dataReceived(SESSION[start:stop])
        self.assertEqual(transport.value(), WELCOME + SESSION_REPLIES)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300))
    def test_random_bytes_never_crash_and_every_reply_is_well_formed(self, data: bytes) -> None:
        protocol, transport = connect(TextProtocol, make_server(max_line=128))
        protocol.dataReceived(data)
        lines = transport.value().replace(WILL_TIMING_MARK, b"").split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(lines[0] + b"\r\n", WELCOME)
        for line in lines[1:-1]:
            word = line.split(b" ", 1)[0]
            self.assertIn(
                word, {b"ECHO", b"REVERSE", b"TIME", b"HELP", b"NICK", b"SAID", b"WHO", b"BYE", b"ERROR"}, line
            )
        if transport.disconnecting:
            self.assertIn(lines[-2], {b"BYE", b"ERROR LINE_TOO_LONG"})


ASCII_ARG = st.text(alphabet=st.characters(max_codepoint=127, blacklist_characters="\n"), max_size=12)


def core_answers(stream: bytes, max_line: int) -> bytes:
    """The oracle: every complete line of ``stream`` answered by the core, one at a time."""
    core = make_server().core
    session = Session()
    core.room.join(session)
    out = []
    for line in stream.split(b"\n")[:-1]:
        if len(line[:-1] if line.endswith(b"\r") else line) > max_line:
            out.append(b"ERROR LINE_TOO_LONG\r\n")
            break
        request = parse_text_request(line)
        if request is None:
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            out.append(b"ERROR BAD_ENCODING\r\n")
            continue
        out.append(encode_text_reply(core.text_request(session, request.word, request.argument)))
    return b"".join(out)


class CoreAgreementTests(SynchronousTestCase):
    """Whatever the reads, the protocol answers exactly what the core answers line by line."""

    def compare(self, stream: bytes, max_line: int = 64 * 1024) -> None:
        """The same replies as the oracle, in two halves and a line per read."""
        halves = [stream[: len(stream) // 2], stream[len(stream) // 2 :]]
        per_line = stream.splitlines(keepends=True)
        for reads in (halves, per_line):
            protocol, transport = connect(TextProtocol, make_server(max_line=max_line))
            transport.clear()
            for piece in reads:
                protocol.dataReceived(piece)
            self.assertEqual(transport.value(), core_answers(stream, max_line))

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b"\xff", b"")), max_size=8),
        st.booleans(),
    )
    def test_any_bytes(self, args: list[bytes], crlf: bool) -> None:
        """Any bytes but LF and 0xFF (telnet's IAC, stripped before the core sees a line)."""
        self.compare(b"".join(b"ECHO " + arg + (b"\r\n" if crlf else b"\n") for arg in args))

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["ECHO ", "REV ", "rev ", "HELP ", "TIME", "WHO", "FOO "]), ASCII_ARG, st.booleans()
            ),
            min_size=1,
            max_size=8,
        ),
        st.integers(7, 20),
    )
    def test_ascii_lines_near_the_line_limit(self, args: list[tuple[str, str, bool]], max_line: int) -> None:
        stream = b"".join((word + arg).encode() + (b"\r\n" if crlf else b"\n") for word, arg, crlf in args)
        self.compare(stream, max_line)

    def test_a_whole_read_of_plain_echo_lines(self) -> None:
        self.compare(b"ECHO a\r\nECHO b c\nECHO d\tx\r\nECHO partial")
