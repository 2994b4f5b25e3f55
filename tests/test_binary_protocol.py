"""Binary frame mode on a StringTransport."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, feed, make_server
from tinytcp.protocol.core import Session
from tinytcp.protocol.wire import encode_frame, encode_frame_reply
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.connection import FLUSH_COUNT, FOLD


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte string of whole frames; fails on a partial one."""
    out, offset = [], 0
    while offset < len(data):
        code, length = struct.unpack_from(">BI", data, offset)
        payload = data[offset + 5 : offset + 5 + length]
        assert len(payload) == length, "partial frame"
        out.append((code, payload))
        offset += 5 + length
    return out


class BinaryProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server(max_frame=1000)
        self.protocol, self.transport = connect(BinaryProtocol, self.server)

    def replies(self) -> list[tuple[int, bytes]]:
        return frames(self.transport.value())

    def test_nothing_sent_on_connect(self) -> None:
        self.assertEqual(self.transport.value(), b"")

    def test_echo_exact_bytes(self) -> None:
        feed(self.protocol, b"\x01\x00\x00\x00\x02hi")
        self.assertEqual(self.transport.value(), b"\x01\x00\x00\x00\x02hi")

    def test_commands(self) -> None:
        feed(self.protocol, encode_frame(2, "ab👍🏽".encode()) + encode_frame(4, b"") + encode_frame(5, b"rev"))
        self.assertEqual(
            self.replies(),
            [
                (2, "👍🏽ba".encode()),
                (4, b"2025-09-12T17:24:13-05:00"),
                (5, b"REVERSE <text> (alias REV): the text reversed, character by character as a reader sees them"),
            ],
        )

    def test_zero_length_payload(self) -> None:
        feed(self.protocol, encode_frame(1, b""))
        self.assertEqual(self.transport.value(), b"\x01\x00\x00\x00\x00")

    def test_maximum_size_payload(self) -> None:
        payload = bytes(range(256)) * 3 + b"x" * 232
        self.assertEqual(len(payload), 1000)
        feed(self.protocol, encode_frame(1, payload), step=7)
        self.assertEqual(self.replies(), [(1, payload)])

    def test_oversize_length_errors_then_closes(self) -> None:
        feed(self.protocol, encode_frame(1, b"ok") + b"\x01\x00\x00\x03\xe9" + b"x" * 10)
        self.assertEqual(self.replies(), [(1, b"ok"), (0xFF, b"FRAME_TOO_LARGE")])
        self.assertTrue(self.transport.disconnecting)

    def test_huge_announced_length_allocates_nothing(self) -> None:
        feed(self.protocol, b"\x01\xff\xff\xff\xff")
        self.assertEqual(self.replies(), [(0xFF, b"FRAME_TOO_LARGE")])
        self.assertEqual(self.protocol.frames.have, 0)

    def test_unknown_code_keeps_connection_usable(self) -> None:
        feed(self.protocol, encode_frame(0x42, b"?") + encode_frame(1, b"still here"))
        self.assertEqual(self.replies(), [(0xFF, b"UNKNOWN_COMMAND"), (1, b"still here")])
        self.assertFalse(self.transport.disconnecting)

    def test_invalid_utf8_reverse(self) -> None:
        feed(self.protocol, encode_frame(2, b"\xc3\x28") + encode_frame(2, b"ok"))
        self.assertEqual(self.replies(), [(0xFF, b"BAD_ENCODING"), (2, b"ko")])

    def test_quit_replies_bye_then_closes(self) -> None:
        feed(self.protocol, encode_frame(3, b"") + encode_frame(1, b"late"))
        self.assertEqual(self.transport.value(), b"\x03\x00\x00\x00\x03BYE")
        self.assertTrue(self.transport.disconnecting)

    def test_frame_split_byte_by_byte(self) -> None:
        stream = encode_frame(1, b"hello") + encode_frame(1, b"") + encode_frame(2, b"abc")
        feed(self.protocol, stream, step=1)
        self.assertEqual(self.replies(), [(1, b"hello"), (1, b""), (2, b"cba")])

    def test_ten_thousand_frames_in_one_write_answered_in_order_a_write_per_256_replies(self) -> None:
        stream = b"".join(encode_frame(1, b"%05d" % i) for i in range(10_000))
        writes: list[bytes] = []
        self.transport.write = writes.append  # type: ignore[method-assign]
        feed(self.protocol, stream)
        # replies under SMALL bytes are gathered FLUSH_COUNT at a time, so one write carries many
        self.assertEqual(len(writes), -(-10_000 // FLUSH_COUNT))
        self.assertEqual(b"".join(writes), stream)

    def test_a_long_read_leaves_few_request_codes_held(self) -> None:
        # requests are counted as a byte each and folded as the loop goes: a read of ten
        # thousand requests must not leave ten thousand bytes held by an idle connection
        feed(self.protocol, b"".join(encode_frame(1, b"") for _ in range(10_000)))
        self.assertLessEqual(len(self.protocol.session.codes), FOLD + FLUSH_COUNT)
        self.assertEqual(self.protocol.session.requests + len(self.protocol.session.codes), 10_000)

    def test_large_frame_in_small_reads(self) -> None:
        protocol, transport = connect(BinaryProtocol, make_server(max_frame=16 * 1024 * 1024))
        payload = b"z" * (16 * 1024 * 1024)
        feed(protocol, encode_frame(1, payload), step=4096)
        self.assertEqual(frames(transport.value()), [(1, payload)])


class BinaryPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.sampled_from([1, 2, 4, 5, 8, 0x7F]), st.binary(max_size=40)), max_size=12),
        st.lists(st.integers(1, 600), max_size=12),
    )
    def test_any_split_gives_the_same_replies(self, requests: list[tuple[int, bytes]], cuts: list[int]) -> None:
        stream = b"".join(encode_frame(code, payload) for code, payload in requests)
        whole_protocol, whole = connect(BinaryProtocol, make_server())
        whole_protocol.dataReceived(stream)
        protocol, transport = connect(BinaryProtocol, make_server())
        points = sorted({c for c in cuts if c < len(stream)})
        for start, stop in zip([0, *points], [*points, len(stream)], strict=True):
            protocol.dataReceived(stream[start:stop])
        self.assertEqual(transport.value(), whole.value())
        self.assertEqual(len(frames(whole.value())), len(requests))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_random_bytes_never_crash_and_replies_are_frames(self, data: bytes) -> None:
        protocol, transport = connect(BinaryProtocol, make_server(max_frame=64))
        protocol.dataReceived(data)
        replies = frames(transport.value())
        for code, _ in replies:
            self.assertIn(code, {1, 2, 3, 4, 5, 6, 7, 8, 0xFF})
        if transport.disconnecting:
            self.assertIn(replies[-1], [(3, b"BYE"), (0xFF, b"FRAME_TOO_LARGE")])


class CoreAgreementTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.sampled_from([1, 1, 1, 2, 3, 4, 5, 0x7F]), st.binary(max_size=20)), max_size=10),
        st.booleans(),
        st.integers(1, 30),
    )
    def test_the_protocol_answers_exactly_as_the_core_does(
        self, requests: list[tuple[int, bytes]], frame_per_read: bool, max_frame: int
    ) -> None:
        frames_sent = [encode_frame(code, payload) for code, payload in requests]
        reads = frames_sent if frame_per_read else [b"".join(frames_sent)]
        protocol, transport = connect(BinaryProtocol, make_server(max_frame=max_frame))
        for read in reads:
            protocol.dataReceived(read)
        core = make_server().core
        session = Session()
        expected = []
        for code, payload in requests:
            if len(payload) > max_frame:
                expected.append(encode_frame(0xFF, b"FRAME_TOO_LARGE"))
                break
            reply = core.frame_request(session, code, payload)
            expected.append(encode_frame_reply(reply))
            if reply.close:
                break
        self.assertEqual(transport.value(), b"".join(expected))
