"""The hostile client at the protocol level (fake clock, in-memory transports): bounded memory,
fair time, no stuck slots, bounded logs, safe pushed text, and commands that answer later."""

from __future__ import annotations

import tracemalloc

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, make_server
from tinytcp.protocol.core import COMMANDS, Command, Core
from tinytcp.protocol.reply import Code, Reply
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.connection import FLUSH_SIZE, LOGGED_ERRORS
from tinytcp.server.state import Server, Settings
from tinytcp.server.text import TextProtocol

MARK = 64 * 1024


class HighWaterTransport(StringTransport):
    """A StringTransport that pauses its producer past a high-water mark, as Twisted's TCP
    transport does on every write while its buffer is full, and resumes it once drained."""

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.io.getvalue()) > MARK:
            self.producer.pauseProducing()

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def drain(self) -> bytes:
        """The client reads everything; the transport resumes its producer."""
        value = self.value()
        self.clear()
        if self.producer is not None and not self.disconnecting:
            self.producer.resumeProducing()
        return value


def connect_high_water(protocol_class: type, server: Server, port: int = 6000):
    protocol = protocol_class(server)
    transport = HighWaterTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    protocol.makeConnection(transport)
    return protocol, transport


def room_of(server: Server, count: int) -> list[TextProtocol]:
    members = []
    for i in range(count):
        member, transport = connect(TextProtocol, server, port=10_000 + i)
        member.dataReceived(b"NICK member%d\n" % i)
        transport.clear()
        members.append(member)
    return members


class LargeRepliesTests(SynchronousTestCase):
    """Case 1: small requests with large replies stop at the mark, not at the end of the read."""

    def test_who_flood_from_a_client_that_never_reads_stays_at_the_mark(self) -> None:
        server = make_server()
        room_of(server, 200)
        hostile, transport = connect_high_water(TextProtocol, server)
        transport.clear()
        count = 64 * 1024 // 4
        hostile.dataReceived(b"WHO\n" * count)
        who_reply = len(transport.value().split(b"\r\n", 1)[0]) + 2
        self.assertGreater(who_reply, 1500)
        self.assertLessEqual(len(transport.value()), MARK + FLUSH_SIZE + who_reply)
        self.assertEqual(transport.producerState, "paused")
        received = transport.value()
        transport.clear()
        for _ in range(count):  # the client reads now: every reply arrives, in order
            if transport.producerState != "paused":
                break
            received += transport.drain()
        received += transport.value()
        self.assertEqual(received.count(b"\r\n"), count)
        self.assertEqual(set(received.split(b"\r\n")[:-1]), {received.split(b"\r\n")[0]})
        self.assertEqual(transport.producerState, "producing")

    def test_binary_help_flood_stays_at_the_mark_and_resumes_where_it_stopped(self) -> None:
        server = make_server()
        hostile, transport = connect_high_water(BinaryProtocol, server)
        frames = b"".join(encode_frame(5, b"REV") + encode_frame(1, b"%d" % i) for i in range(20_000))
        hostile.dataReceived(frames)
        self.assertLessEqual(len(transport.value()), MARK + FLUSH_SIZE + 200)
        received = b""
        while transport.producerState == "paused":
            received += transport.drain()
        received += transport.value()
        echoes = [payload for code, payload in split_frames(received) if code == Code.ECHO]
        self.assertEqual(echoes, [b"%d" % i for i in range(20_000)])

    def test_reads_that_arrive_while_paused_wait_their_turn(self) -> None:
        server = make_server()
        hostile, transport = connect_high_water(TextProtocol, server)
        transport.clear()
        hostile.dataReceived(b"HELP REV\n" * 2000)
        self.assertEqual(transport.producerState, "paused")
        hostile.dataReceived(b"ECHO last\n")  # a read the transport delivered as it paused
        received = b""
        while transport.producerState == "paused":
            received += transport.drain()
        received += transport.value()
        lines = received.split(b"\r\n")
        self.assertEqual(len(lines), 2002)
        self.assertEqual(lines[-2], b"ECHO last")


class WriteSizeTests(SynchronousTestCase):
    """A long read of larger replies with small ones among them (a run of 256 would be about
    250 KB): every write holds at most FLUSH_SIZE of replies plus one, and together they are
    every reply in order."""

    def check(self, protocol_class: type, stream: bytes, expected: bytes, largest: int) -> None:
        protocol, transport = connect(protocol_class, make_server())
        transport.clear()
        writes: list[bytes] = []
        transport.write = writes.append  # type: ignore[method-assign]
        transport.writeSequence = lambda pieces: writes.append(b"".join(pieces))  # type: ignore[method-assign]
        protocol.dataReceived(stream)
        self.assertEqual(b"".join(writes), expected)
        self.assertGreater(len(writes), 10)
        self.assertLessEqual(max(map(len, writes)), FLUSH_SIZE + largest)

    def test_text(self) -> None:
        lines = [b"ECHO " + b"y" * (1000 + i % 50) if i % 7 else b"ECHO %d" % i for i in range(3000)]
        replies = b"".join(line + b"\r\n" for line in lines)
        self.check(TextProtocol, b"".join(line + b"\n" for line in lines), replies, 1060)

    def test_binary(self) -> None:
        payloads = [b"y" * (1000 + i % 50) if i % 7 else b"%d" % i for i in range(3000)]
        frames = b"".join(encode_frame(Code.ECHO, payload) for payload in payloads)
        self.check(BinaryProtocol, frames, frames, 1060)


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset + 1 : offset + 5], "big")
        frames.append((data[offset], data[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return frames


class ClosingTests(SynchronousTestCase):
    """Case 3: whatever the reason the server closes, the connection is gone within the grace."""

    def closes(self, make_it_close, protocol_class=TextProtocol, **settings) -> None:
        server = make_server(shutdown_grace=2.0, **settings)
        protocol, transport = connect(protocol_class, server)
        aborted: list[bool] = []
        transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        make_it_close(server, protocol)
        self.assertTrue(transport.disconnecting)
        server.reactor.advance(1.9)
        self.assertEqual(aborted, [])
        server.reactor.advance(0.2)
        self.assertEqual(aborted, [True])
        protocol.connectionLost()
        self.assertNotIn(protocol, server.connections)
        self.assertNotIn(protocol.session, server.core.room.members)

    def test_quit(self) -> None:
        self.closes(lambda server, protocol: protocol.dataReceived(b"QUIT\n"))

    def test_binary_quit(self) -> None:
        self.closes(lambda server, protocol: protocol.dataReceived(encode_frame(3, b"")), BinaryProtocol)

    def test_idle_timeout(self) -> None:
        self.closes(lambda server, protocol: server.reactor.advance(10), idle_timeout=10)

    def test_line_too_long(self) -> None:
        self.closes(lambda server, protocol: protocol.dataReceived(b"x" * 200), max_line=100)

    def test_frame_too_large(self) -> None:
        self.closes(lambda server, protocol: protocol.dataReceived(b"\x01\xff\xff\xff\xff"), BinaryProtocol)

    def test_slow_consumer(self) -> None:
        def flood(server: Server, protocol: TextProtocol) -> None:
            speaker, _ = connect(TextProtocol, server, port=7)
            protocol.pauseProducing()
            for _ in range(80):
                speaker.dataReceived(b"SAY " + b"m" * 1000 + b"\n")

        self.closes(flood, max_frame=1000, max_pending=1, say_rate=0)

    def test_a_connection_lost_in_time_leaves_no_timer(self) -> None:
        server = make_server(shutdown_grace=2.0)
        protocol, transport = connect(TextProtocol, server)
        protocol.dataReceived(b"QUIT\n")
        protocol.connectionLost()
        self.assertEqual(server.reactor.getDelayedCalls(), [])


class PartialRequestMemoryTests(SynchronousTestCase):
    """Case 4: a partial request costs about its own size, however slowly it arrives."""

    def held_cost(self, protocol_class: type, start: bytes, held: int, **settings: int) -> float:
        protocol, _ = connect(protocol_class, make_server(**settings))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            protocol.dataReceived(start)
            for _ in range(held - len(start)):
                protocol.dataReceived(b"y")
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        return grown / held

    def test_a_frame_one_byte_at_a_time(self) -> None:
        cost = self.held_cost(BinaryProtocol, encode_frame(1, b"x" * 1_000_000)[:5], 200_000)
        self.assertLess(cost, 2.0)

    def test_a_line_one_byte_at_a_time(self) -> None:
        cost = self.held_cost(TextProtocol, b"ECHO ", 200_000, max_line=1_000_000)
        self.assertLess(cost, 2.0)


class LogTests(SynchronousTestCase):
    """Case 6: a flood of bad input writes a few lines of log per connection, not one per error."""

    def test_repeated_errors_are_counted_not_logged(self) -> None:
        server = make_server()
        protocol, transport = connect(TextProtocol, server)
        with capturedLogs() as events:
            protocol.dataReceived(b"BOGUS\n" * 20_000)
            protocol.connectionLost()
        self.assertEqual(transport.value().count(b"ERROR UNKNOWN_COMMAND"), 20_000)
        self.assertLessEqual(len(events), LOGGED_ERRORS + 2)
        text = "\n".join(e["log_format"].format(**e) for e in events)
        self.assertIn("19997 more errors not logged", text)
        self.assertLess(len(text), 2048)


class PushedTextTests(SynchronousTestCase):
    """Case 8: what reaches other people's terminals carries no control characters but TAB."""

    def test_say_cannot_paint_on_other_terminals(self) -> None:
        server = make_server()
        speaker, _ = connect(TextProtocol, server, port=1)
        listener, transport = connect(TextProtocol, server, port=2)
        transport.clear()
        speaker.dataReceived(b"SAY a\x1b[2Kb\x08c\td\x7fe\xc2\x9bf\x00\n")
        self.assertEqual(transport.value(), "MSG guest1 a^[[2Kb^Hc\td^?e\ufffdf^@\r\n".encode())

    def test_binary_say_is_cleaned_too(self) -> None:
        server = make_server()
        speaker, _ = connect(BinaryProtocol, server, port=1)
        listener, transport = connect(BinaryProtocol, server, port=2)
        speaker.dataReceived(encode_frame(7, b"x\x1by"))
        self.assertEqual(transport.value(), encode_frame(0x80, b"guest1 x^[y"))

    def test_guest_names_cannot_be_claimed(self) -> None:
        server = make_server()
        connect(TextProtocol, server, port=1)
        protocol, transport = connect(TextProtocol, server, port=2)
        transport.clear()
        protocol.dataReceived(b"NICK guest1\nNICK GUEST99\nNICK guesthouse\n")
        self.assertEqual(transport.value(), b"ERROR NICK_TAKEN\r\nERROR NICK_TAKEN\r\nNICK guesthouse\r\n")


class FairnessTests(SynchronousTestCase):
    """Case 2: one client's SAYs cost the room a bounded number of pushes per second."""

    def test_say_is_rate_limited_per_client(self) -> None:
        server = make_server(say_rate=5.0, say_burst=10)
        members = room_of(server, 50)
        flooder, transport = connect(TextProtocol, server, port=1)
        transport.clear()
        flooder.dataReceived(b"SAY x\n" * 1000)
        replies = transport.value().split(b"\r\n")[:-1]
        self.assertEqual(replies.count(b"SAID 50"), 10)
        self.assertEqual(replies.count(b"ERROR RATE_LIMITED"), 990)
        self.assertEqual(members[0].transport.value().count(b"MSG guest"), 10)
        server.reactor.advance(1.0)
        transport.clear()
        flooder.dataReceived(b"SAY x\n" * 10)
        self.assertEqual(transport.value().count(b"SAID 50"), 5)

    def test_zero_turns_the_limit_off(self) -> None:
        server = make_server(say_rate=0)
        flooder, transport = connect(TextProtocol, server, port=1)
        flooder.dataReceived(b"SAY x\n" * 1000)
        self.assertEqual(transport.value().count(b"SAID 0"), 1000)


def later_command(results: list[defer.Deferred[bytes]]) -> Command:
    """LATER: a command that answers when the test fires its Deferred (with TIME's reply code,
    which both wire formats know how to write)."""

    def handler(core: Core, session: object, argument: bytes | None) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        results.append(d)
        return d

    return Command("LATER", Code.TIME, "LATER: answers later", handler)


class DeferredReplyTests(SynchronousTestCase):
    """A command may answer later; the requests after it wait, and nothing is reordered."""

    def setUp(self) -> None:
        self.pending: list[defer.Deferred[bytes]] = []
        core = Core(commands=(*(c for c in COMMANDS if c.code != Code.TIME), later_command(self.pending)))
        self.server = Server(Settings(), core=core, reactor=make_server().reactor)

    def test_text_requests_after_it_wait(self) -> None:
        protocol, transport = connect(TextProtocol, self.server)
        transport.clear()
        protocol.dataReceived(b"ECHO 1\nLATER\nECHO 2\n")
        self.assertEqual(transport.value(), b"ECHO 1\r\n")
        self.assertEqual(transport.producerState, "paused")
        protocol.dataReceived(b"ECHO 3\n")
        self.assertEqual(transport.value(), b"ECHO 1\r\n")
        self.pending[0].callback(b"done")
        self.assertEqual(transport.value(), b"ECHO 1\r\nTIME done\r\nECHO 2\r\nECHO 3\r\n")
        self.assertEqual(transport.producerState, "producing")

    def test_binary_requests_after_it_wait(self) -> None:
        protocol, transport = connect(BinaryProtocol, self.server)
        protocol.dataReceived(encode_frame(Code.TIME, b"") + encode_frame(1, b"after"))
        self.assertEqual(transport.value(), b"")
        self.pending[0].callback(b"now")
        self.assertEqual(transport.value(), encode_frame(Code.TIME, b"now") + encode_frame(1, b"after"))

    def test_a_failure_is_an_internal_error_and_the_connection_goes_on(self) -> None:
        protocol, transport = connect(TextProtocol, self.server)
        transport.clear()
        protocol.dataReceived(b"LATER\nECHO on\n")
        self.pending[0].errback(RuntimeError("boom"))
        self.assertEqual(transport.value(), b"ERROR INTERNAL_ERROR\r\nECHO on\r\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_the_reply_of_a_closed_connection_goes_nowhere(self) -> None:
        protocol, transport = connect(TextProtocol, self.server)
        transport.clear()
        protocol.dataReceived(b"LATER\n")
        protocol.connectionLost()
        self.pending[0].callback(b"late")
        self.assertEqual(transport.value(), b"")

    def test_a_reply_can_be_a_reply(self) -> None:
        protocol, transport = connect(TextProtocol, self.server)
        transport.clear()
        protocol.dataReceived(b"LATER\n")
        self.pending[0].callback(Reply(Code.ERROR, b"BAD_ARGUMENTS"))  # type: ignore[arg-type]
        self.assertEqual(transport.value(), b"ERROR BAD_ARGUMENTS\r\n")
