"""Codecs and the telnet filter, with property tests for the parsers."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tinytcp.protocol import telnet
from tinytcp.protocol.core import Code, Reply
from tinytcp.protocol.framing import FrameSplitter
from tinytcp.protocol.telnet import DATA, strip_telnet
from tinytcp.protocol.wire import (
    TextRequest,
    encode_frame,
    encode_frame_reply,
    encode_text_reply,
    parse_text_reply,
    parse_text_request,
)

BLANKS = b" \t\r\x0b\x0c"


def reference_strip_telnet(data: bytes, state: int = DATA) -> tuple[bytes, int, int]:
    """The byte-at-a-time state machine strip_telnet replaced (too slow on IAC-heavy input),
    kept as the oracle for its semantics."""
    out = bytearray()
    marks = 0
    for byte in data:
        if state == telnet.DATA:
            if byte == telnet.IAC:
                state = telnet.COMMAND
            else:
                out.append(byte)
        elif state == telnet.COMMAND:
            if byte == telnet.DO:
                state = telnet.DO_OPTION
            elif telnet.WILL <= byte <= telnet.DONT:
                state = telnet.OPTION
            elif byte == telnet.SB:
                state = telnet.SUBNEGOTIATION
            else:
                state = telnet.DATA
        elif state == telnet.OPTION:
            state = telnet.DATA
        elif state == telnet.DO_OPTION:
            marks += byte == telnet.TIMING_MARK
            state = telnet.DATA
        elif state == telnet.SUBNEGOTIATION:
            if byte == telnet.IAC:
                state = telnet.SUBNEGOTIATION_IAC
        else:
            state = telnet.DATA if byte == telnet.SE else telnet.SUBNEGOTIATION
    return bytes(out), state, marks


#: bytes drawn mostly from the ones that matter to telnet, so that sequences actually occur
TELNET_BYTES = st.binary() | st.lists(
    st.sampled_from([0xFF, 0xFA, 0xF0, 0xFB, 0xFC, 0xFD, 0xFE, 0xF1, 0x06, 0x0A, 0x41]), max_size=40
).map(bytes)
STATES = st.sampled_from(
    [
        telnet.DATA,
        telnet.COMMAND,
        telnet.OPTION,
        telnet.SUBNEGOTIATION,
        telnet.SUBNEGOTIATION_IAC,
        telnet.DO_OPTION,
    ]
)


class TextRequestTests(SynchronousTestCase):
    def test_word_and_argument(self) -> None:
        self.assertEqual(parse_text_request(b"ECHO hello"), TextRequest(b"ECHO", b"hello"))

    def test_blanks_around_the_line_and_first_run_ignored_inner_kept(self) -> None:
        self.assertEqual(parse_text_request(b" \tECHO \t a  b \t\r"), TextRequest(b"ECHO", b"a  b"))

    def test_no_argument(self) -> None:
        self.assertEqual(parse_text_request(b"TIME"), TextRequest(b"TIME", None))
        self.assertEqual(parse_text_request(b"ECHO   \r"), TextRequest(b"ECHO", None))

    def test_blank_line(self) -> None:
        self.assertIsNone(parse_text_request(b""))
        self.assertIsNone(parse_text_request(b" \t\r"))

    @given(
        st.binary(min_size=1).filter(lambda w: not any(b in BLANKS + b"\n" for b in w)),
        st.binary().filter(lambda a: b"\n" not in a),
        st.sampled_from([b" ", b"\t", b"  \t "]),
    )
    def test_argument_is_the_rest_after_the_first_blank_run(self, word: bytes, arg: bytes, gap: bytes) -> None:
        request = parse_text_request(word + gap + arg)
        assert request is not None
        self.assertEqual(request.word, word)
        expected = arg.strip(BLANKS)
        self.assertEqual(request.argument, expected or None)

    @given(st.binary().filter(lambda a: b"\n" not in a))
    def test_never_raises(self, line: bytes) -> None:
        request = parse_text_request(line)
        if request is not None:
            self.assertIn(request.word, line)


class ReplyCodecTests(SynchronousTestCase):
    def test_text_replies(self) -> None:
        self.assertEqual(encode_text_reply(Reply(Code.ECHO, b"hi")), b"ECHO hi\r\n")
        self.assertEqual(encode_text_reply(Reply(Code.QUIT, b"BYE")), b"BYE\r\n")
        self.assertEqual(encode_text_reply(Reply(Code.ERROR, b"BAD_ARGUMENTS")), b"ERROR BAD_ARGUMENTS\r\n")

    def test_text_reply_round_trip(self) -> None:
        replies = [Reply(Code.ECHO, b"a b"), Reply(Code.QUIT, b"BYE"), Reply(Code.ERROR, b"X"), Reply(Code.MSG, b"* a")]
        for reply in replies:
            self.assertEqual(parse_text_reply(encode_text_reply(reply)[:-2]), reply)

    def test_frames(self) -> None:
        self.assertEqual(encode_frame(1, b"hi"), b"\x01\x00\x00\x00\x02hi")
        self.assertEqual(encode_frame_reply(Reply(0xFF, b"X")), b"\xff\x00\x00\x00\x01X")


class TelnetTests(SynchronousTestCase):
    def test_plain_data_untouched(self) -> None:
        self.assertEqual(strip_telnet(b"ECHO hi\r\n"), (b"ECHO hi\r\n", DATA, 0))

    def test_negotiation_commands_and_subnegotiation_stripped(self) -> None:
        data = b"\xff\xfd\x01EC\xff\xf4HO\xff\xfa\x18\x00xterm\xff\xf0 hi\xff\xff\r\n"
        self.assertEqual(strip_telnet(data), (b"ECHO hi\r\n", DATA, 0))

    def test_timing_mark_requests_are_counted(self) -> None:
        data = b"a\xff\xf4\xff\xfd\x06b\xff\xfb\x06\xff\xfd\x06"
        self.assertEqual(strip_telnet(data), (b"ab", DATA, 2))

    def test_option_byte_may_be_a_newline(self) -> None:
        self.assertEqual(strip_telnet(b"a\xff\xfb\nb")[0], b"ab")

    @given(st.lists(st.binary(), max_size=8), st.data())
    def test_any_split_gives_the_same_result(self, pieces: list[bytes], data: st.DataObject) -> None:
        stream = b"".join(pieces)
        whole, end_state, whole_marks = strip_telnet(stream)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
        state, out, marks = DATA, b"", 0
        for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            chunk, state, found = strip_telnet(stream[start:stop], state)
            out += chunk
            marks += found
        self.assertEqual((out, state, marks), (whole, end_state, whole_marks))
        self.assertNotIn(b"\xff", whole)

    @given(st.lists(TELNET_BYTES, max_size=6), STATES)
    def test_same_as_the_reference_state_machine_read_by_read(self, reads: list[bytes], state: int) -> None:
        expected_state = got_state = state
        for read in reads:
            expected, expected_state, expected_marks = reference_strip_telnet(read, expected_state)
            got, got_state, got_marks = strip_telnet(read, got_state)
            self.assertEqual((got, got_state, got_marks), (expected, expected_state, expected_marks))

    def test_an_unterminated_subnegotiation_keeps_no_bytes(self) -> None:
        out, state, _ = strip_telnet(b"a\xff\xfa\x18" + b"x" * 1000)
        self.assertEqual((out, state), (b"a", telnet.SUBNEGOTIATION))
        self.assertEqual(strip_telnet(b"y" * 1000 + b"\xff", state), (b"", telnet.SUBNEGOTIATION_IAC, 0))
        # IAC IAC inside a subnegotiation is a pair: the SE after it ends nothing
        self.assertEqual(strip_telnet(b"\xff\xf0b", telnet.SUBNEGOTIATION_IAC), (b"", telnet.SUBNEGOTIATION, 0))
        self.assertEqual(strip_telnet(b"\xf0b", telnet.SUBNEGOTIATION_IAC), (b"b", DATA, 0))

    def test_a_timing_mark_inside_another_sequence_is_not_counted(self) -> None:
        self.assertEqual(strip_telnet(b"\xff\xff\xfd\x06"), (b"\xfd\x06", DATA, 0))
        self.assertEqual(strip_telnet(b"\xff\xfb\xff\xfd\x06"), (b"\xfd\x06", DATA, 0))
        self.assertEqual(strip_telnet(b"\xff\xfa\xff\xfd\x06\xff\xf0\xff\xfd\x06"), (b"", DATA, 1))


class FrameSplitterTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=9000)), max_size=6),
        st.lists(st.integers(1, 5000), max_size=30),
    )
    def test_any_reads_give_the_frames_sent(self, frames: list[tuple[int, bytes]], sizes: list[int]) -> None:
        """Reads of any sizes (small ones gathered, large ones held as they are) cut the same frames."""
        stream = b"".join(encode_frame(code, payload) for code, payload in frames)
        splitter = FrameSplitter(10_000)
        got: list[tuple[int, bytes]] = []
        offset = 0
        for size in [*sizes, len(stream)]:
            got.extend(splitter.frames(stream[offset : offset + size]))
            offset += size
        self.assertEqual(got, frames)
        self.assertEqual(splitter.have, 0)

    def test_a_frame_held_across_reads_is_copied_out_once_with_what_follows(self) -> None:
        splitter = FrameSplitter(1 << 20)
        frame = encode_frame(1, b"p" * 100_000) + encode_frame(2, b"next")
        reads = [frame[:3], frame[3:70_000], frame[70_000:70_001], frame[70_001:]]
        got = [list(splitter.frames(read)) for read in reads]
        self.assertEqual(got, [[], [], [], [(1, b"p" * 100_000), (2, b"next")]])

    def test_too_large_stops_before_holding(self) -> None:
        splitter = FrameSplitter(10)
        self.assertEqual(list(splitter.frames(encode_frame(1, b"ok") + b"\x05\x00\x00\x00\x0bxx")), [(1, b"ok")])
        self.assertEqual(splitter.too_large, (5, 11))
        self.assertEqual(splitter.have, 0)


#: whole sequences and stray bytes, so that reads are mostly made of complete IAC sequences
TELNET_PIECES = [
    b"\xff", b"\xff\xff", b"\xff\xf1", b"\xff\xf4", b"\xff\xf0", b"\xff\x61", b"\xff\xfb\x01", b"\xff\xfd\x03",
    b"\xff\xfd\x06", b"\xff\xfc\x05", b"\xff\xfe\xff", b"\xff\xfb", b"\xff\xfd", b"\xff\xfa\x18\x00x\xff\xf0",
    b"a", b"\xfb", b"\xfd", b"\x06", b"\xf0",
    *(b"\xff\xfb" + bytes([option]) for option in range(2, 12)),
]  # fmt: skip


class TelnetKindByKindTests(SynchronousTestCase):
    """The bytes.replace path (reads without subnegotiation or option-byte IAC) against the oracle."""

    @settings(max_examples=2000, deadline=None)
    @given(st.lists(st.sampled_from(TELNET_PIECES), max_size=24), st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5]))
    def test_reads_made_of_sequences(self, pieces: list[bytes], state: int) -> None:
        data = b"".join(pieces)
        self.assertEqual(strip_telnet(data, state), reference_strip_telnet(data, state))
