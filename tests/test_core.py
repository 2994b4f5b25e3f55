"""The command core, without a reactor or any bytes on a wire."""

from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase

from tinytcp.protocol import errors
from tinytcp.protocol.core import BYE, Code, Core, Reply, Session, error, reverse_text

FIXED = datetime(2025, 9, 12, 17, 24, 13, 987654, tzinfo=timezone(timedelta(hours=-5)))


class CoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = Core(clock=lambda: FIXED)
        self.session = Session()

    def text(self, word: bytes, argument: bytes | None = None) -> Reply:
        return self.core.text_request(self.session, word, argument)

    def test_time_is_iso8601_local_with_offset_whole_seconds(self) -> None:
        self.assertEqual(self.text(b"TIME"), Reply(Code.TIME, b"2025-09-12T17:24:13-05:00"))

    def test_time_from_the_real_clock_parses_back(self) -> None:
        payload = Core().text_request(self.session, b"TIME", None).payload.decode()
        parsed = datetime.fromisoformat(payload)
        self.assertIsNotNone(parsed.utcoffset())
        self.assertEqual(parsed.microsecond, 0)

    def test_time_takes_no_argument(self) -> None:
        self.assertEqual(self.text(b"TIME", b"now"), error(errors.BAD_ARGUMENTS))

    def test_echo(self) -> None:
        self.assertEqual(self.text(b"ECHO", b"Hello  there"), Reply(Code.ECHO, b"Hello  there"))

    def test_echo_without_text(self) -> None:
        self.assertEqual(self.text(b"ECHO"), error(errors.BAD_ARGUMENTS))

    def test_command_word_is_case_insensitive(self) -> None:
        for word in (b"echo", b"Echo", b"eChO"):
            self.assertEqual(self.text(word, b"x"), Reply(Code.ECHO, b"x"))

    def test_reverse_and_its_alias(self) -> None:
        self.assertEqual(self.text(b"REVERSE", b"abc"), Reply(Code.REVERSE, b"cba"))
        self.assertEqual(self.text(b"rev", b"abc"), Reply(Code.REVERSE, b"cba"))

    def test_reverse_keeps_graphemes_whole(self) -> None:
        reply = self.text(b"REVERSE", "ab👍🏽".encode())
        self.assertEqual(reply, Reply(Code.REVERSE, "👍🏽ba".encode()))

    def test_reverse_without_text(self) -> None:
        self.assertEqual(self.text(b"REVERSE"), error(errors.BAD_ARGUMENTS))

    def test_help_lists_command_names(self) -> None:
        self.assertEqual(self.text(b"HELP"), Reply(Code.HELP, b"TIME ECHO REVERSE HELP NICK SAY WHO INFO QUIT"))

    def test_help_for_one_command_and_alias(self) -> None:
        self.assertTrue(self.text(b"HELP", b"echo").payload.startswith(b"ECHO <text>"))
        self.assertEqual(self.text(b"HELP", b"REV"), self.text(b"HELP", b"REVERSE"))
        self.assertEqual(self.text(b"HELP", b"EXIT"), self.text(b"HELP", b"QUIT"))

    def test_help_for_unknown_command(self) -> None:
        self.assertEqual(self.text(b"HELP", b"FLY"), error(errors.UNKNOWN_COMMAND))

    def test_quit_and_exit_say_bye_and_close(self) -> None:
        self.assertEqual(self.text(b"QUIT"), BYE)
        self.assertEqual(self.text(b"exit"), BYE)
        self.assertTrue(BYE.close)
        self.assertEqual(BYE.payload, b"BYE")

    def test_quit_takes_no_argument(self) -> None:
        self.assertEqual(self.text(b"QUIT", b"now"), error(errors.BAD_ARGUMENTS))

    def test_unknown_command(self) -> None:
        self.assertEqual(self.text(b"FLY", b"away"), error(errors.UNKNOWN_COMMAND))

    def test_argument_is_never_interpreted(self) -> None:
        for text in (b"%s %d {0} {__class__}", b"$(rm -rf /)", b"__import__('os')"):
            self.assertEqual(self.text(b"ECHO", text).payload, text)

    def test_requests_are_counted(self) -> None:
        self.text(b"TIME")
        self.text(b"FLY")
        self.assertEqual(self.session.requests, 2)


class FrameRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = Core(clock=lambda: FIXED)
        self.session = Session()

    def frame(self, code: int, payload: bytes = b"") -> Reply:
        return self.core.frame_request(self.session, code, payload)

    def test_echo_any_bytes_and_empty(self) -> None:
        self.assertEqual(self.frame(Code.ECHO, bytes(range(256))), Reply(Code.ECHO, bytes(range(256))))
        self.assertEqual(self.frame(Code.ECHO), Reply(Code.ECHO, b""))

    def test_reverse_needs_utf8(self) -> None:
        self.assertEqual(self.frame(Code.REVERSE, "añb".encode()), Reply(Code.REVERSE, "bña".encode()))
        self.assertEqual(self.frame(Code.REVERSE, b"\xc3\x28"), error(errors.BAD_ENCODING))

    def test_time_help_quit(self) -> None:
        self.assertEqual(self.frame(Code.TIME), Reply(Code.TIME, b"2025-09-12T17:24:13-05:00"))
        self.assertEqual(self.frame(Code.HELP), Reply(Code.HELP, b"TIME ECHO REVERSE HELP NICK SAY WHO INFO QUIT"))
        self.assertEqual(self.frame(Code.QUIT), BYE)

    def test_unknown_codes(self) -> None:
        for code in (0, 0x7F, 0x80, 0xFE, 0xFF):
            self.assertEqual(self.frame(code, b"x"), error(errors.UNKNOWN_COMMAND))


class ReverseTextTests(SynchronousTestCase):
    def test_combining_marks_flags_and_zwj_sequences_survive(self) -> None:
        self.assertEqual(reverse_text("e\u0301x"), "xe\u0301")
        self.assertEqual(reverse_text("🇫🇷🇩🇪"), "🇩🇪🇫🇷")
        family = "👨\u200d👩\u200d👧"
        self.assertEqual(reverse_text(f"a{family}b"), f"b{family}a")

    def test_crlf_is_one_character(self) -> None:
        self.assertEqual(reverse_text("a\r\nb"), "b\r\na")

    def test_ascii(self) -> None:
        self.assertEqual(reverse_text("Hello, world"), "dlrow ,olleH")
