"""The client library: pipelining, matching replies in order, pushed messages, close and timeouts.

Protocol-level tests feed bytes to the client over a StringTransport and a Clock, so they
need no reactor and no sleeps; the end-to-end tests talk to a real ``twistd tinytcp``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, endpoints, error, threads
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.support import RunningServer, free_port
from tinytcp.client import (
    BinaryClient,
    Client,
    ConnectionClosed,
    ProtocolError,
    Refused,
    ReplyTimeout,
    RequestError,
    TextClient,
    UnknownCommand,
    connect,
    frame_for,
    reply_line,
)
from tinytcp.protocol.reply import Code, Reply
from tinytcp.protocol.wire import encode_frame

WELCOME = b"WELCOME tinytcp test ready\r\n"


class Harness:
    """A client on a StringTransport, recording pushed messages and the close."""

    def __init__(self, client_class: type[Client], timeout: float | None = None) -> None:
        self.messages: list[Reply] = []
        self.closes: list[Failure] = []
        self.clock = Clock()
        self.client = client_class(
            on_message=self.messages.append, on_close=self.closes.append, timeout=timeout, clock=self.clock
        )
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)

    def sent(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def receive(self, data: bytes, piecewise: bool = False) -> None:
        if piecewise:
            for index in range(len(data)):
                self.client.dataReceived(data[index : index + 1])
        else:
            self.client.dataReceived(data)

    def lose(self, reason: Exception | None = None) -> None:
        self.client.connectionLost(Failure(reason or error.ConnectionDone()))


def text_harness(timeout: float | None = None) -> Harness:
    harness = Harness(TextClient, timeout)
    harness.receive(WELCOME)
    return harness


def results(deferreds: list[defer.Deferred[Reply]]) -> list[Reply]:
    """The replies of already-fired Deferreds."""
    out: list[Reply] = []
    for d in deferreds:
        d.addCallback(out.append)
    return out


class Inbox:
    """An on_message callback that keeps what arrives; ``wait(n)`` fires once n have come."""

    def __init__(self) -> None:
        self.messages: list[Reply] = []
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def __call__(self, message: Reply) -> None:
        self.messages.append(message)
        ready = [entry for entry in self._waiting if len(self.messages) >= entry[0]]
        for entry in ready:
            self._waiting.remove(entry)
            entry[1].callback(None)

    def wait(self, count: int, clock: Any, timeout: float = 10) -> defer.Deferred[None]:
        if len(self.messages) >= count:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((count, d))
        return d.addTimeout(timeout, clock)


class TextClientTests(unittest.SynchronousTestCase):
    def test_welcome_is_the_banner_not_a_message(self) -> None:
        harness = Harness(TextClient)
        ready = harness.client._ready
        self.assertNoResult(ready)
        harness.receive(WELCOME[:10])
        harness.receive(WELCOME[10:])
        self.assertIs(self.successResultOf(ready), harness.client)
        self.assertEqual(harness.client.banner, "tinytcp test ready")
        self.assertEqual(harness.messages, [])

    def test_not_a_tinytcp_server(self) -> None:
        harness = Harness(TextClient)
        ready = harness.client._ready
        harness.receive(b"SSH-2.0-OpenSSH_9.6\r\n")
        self.failureResultOf(ready, ProtocolError)
        self.assertTrue(harness.transport.disconnecting)

    def test_turned_away_with_an_error(self) -> None:
        harness = Harness(TextClient)
        ready = harness.client._ready
        harness.receive(b"ERROR BUSY\r\n")
        failure = self.failureResultOf(ready, Refused)
        self.assertEqual(failure.value.reply, Reply(Code.ERROR, b"BUSY"))
        self.assertEqual(str(failure.value), "the server said ERROR BUSY")
        self.assertTrue(harness.transport.disconnecting)

    def test_pipelined_requests_get_their_replies_in_order(self) -> None:
        harness = text_harness()
        pending = [harness.client.request(line) for line in ("ECHO hi", "rev abc", "TIME", "help echo", "EXIT")]
        self.assertEqual(harness.sent(), b"ECHO hi\r\nrev abc\r\nTIME\r\nhelp echo\r\nEXIT\r\n")
        self.assertEqual(harness.client.pending, 5)
        for d in pending:
            self.assertNoResult(d)
        harness.receive(b"ECHO hi\r\nREVERSE cba\r\nTIME 2025-09-12T17:24:13-05:00\r\nHELP ECHO <text>\r\nBYE\r\n")
        self.assertEqual(
            results(pending),
            [
                Reply(Code.ECHO, b"hi"),
                Reply(Code.REVERSE, b"cba"),
                Reply(Code.TIME, b"2025-09-12T17:24:13-05:00"),
                Reply(Code.HELP, b"ECHO <text>"),
                Reply(Code.QUIT, b"BYE"),
            ],
        )
        self.assertEqual(harness.client.pending, 0)
        self.assertEqual(harness.messages, [])

    def test_replies_split_across_reads(self) -> None:
        harness = text_harness()
        pending = [harness.client.request("ECHO a b"), harness.client.request("TIME")]
        harness.receive(b"ECHO a b\r\nTIME now\r\n", piecewise=True)
        self.assertEqual(results(pending), [Reply(Code.ECHO, b"a b"), Reply(Code.TIME, b"now")])

    def test_bare_lf_replies(self) -> None:
        harness = text_harness()
        d = harness.client.request("ECHO x\r\n")
        self.assertEqual(harness.sent(), b"ECHO x\r\n")
        harness.receive(b"ECHO x\n")
        self.assertEqual(self.successResultOf(d), Reply(Code.ECHO, b"x"))

    def test_pushed_message_never_takes_a_reply_slot(self) -> None:
        harness = text_harness()
        first, second = harness.client.request("ECHO one"), harness.client.request("ECHO two")
        harness.receive(b"MSG alice: hello\r\nECHO one\r\nMSG bob: hi\r\nECHO two\r\n")
        self.assertEqual(results([first, second]), [Reply(Code.ECHO, b"one"), Reply(Code.ECHO, b"two")])
        self.assertEqual(harness.messages, [Reply(Code.MSG, b"alice: hello"), Reply(Code.MSG, b"bob: hi")])

    def test_line_while_nothing_is_pending_is_a_message(self) -> None:
        harness = text_harness()
        harness.receive(b"ERROR LINE_TOO_LONG\r\nSOMETHING new\r\n")
        self.assertEqual(harness.messages, [Reply(Code.ERROR, b"LINE_TOO_LONG"), Reply(0, b"SOMETHING new")])

    def test_shutdown_bye_is_a_message_and_pending_requests_fail(self) -> None:
        harness = text_harness()
        d = harness.client.request("ECHO hi")
        closed = harness.client.when_closed()
        harness.receive(b"BYE\r\n")
        self.assertNoResult(d)
        self.assertEqual(harness.messages, [Reply(Code.QUIT, b"BYE")])
        harness.lose()
        failure = self.failureResultOf(d, ConnectionClosed)
        self.assertTrue(failure.value.reason.check(error.ConnectionDone))
        self.assertEqual(len(harness.closes), 1)
        self.successResultOf(closed)
        self.failureResultOf(harness.client.request("TIME"), ConnectionClosed)
        self.assertFalse(harness.client.is_open)

    def test_error_reply_answers_any_request(self) -> None:
        harness = text_harness()
        pending = [harness.client.request("ECHO"), harness.client.request("FOO bar")]
        harness.receive(b"ERROR BAD_ARGUMENTS\r\nERROR UNKNOWN_COMMAND\r\n")
        self.assertEqual(results(pending), [Reply(Code.ERROR, b"BAD_ARGUMENTS"), Reply(Code.ERROR, b"UNKNOWN_COMMAND")])

    def test_blank_and_multiline_requests_are_not_sent(self) -> None:
        harness = text_harness()
        self.failureResultOf(harness.client.request("   "), RequestError)
        self.failureResultOf(harness.client.request(""), RequestError)
        self.failureResultOf(harness.client.request("ECHO a\nQUIT"), RequestError)
        self.assertEqual(harness.sent(), b"")
        self.assertEqual(harness.client.pending, 0)

    def test_non_utf8_request_bytes_are_sent_as_they_are(self) -> None:
        harness = text_harness()
        harness.client.request(b"ECHO \xff")
        self.assertEqual(harness.sent(), b"ECHO \xff\r\n")

    def test_close_fails_pending_requests(self) -> None:
        harness = text_harness()
        d = harness.client.request("TIME")
        closed = harness.client.close()
        self.assertTrue(harness.transport.disconnecting)
        self.assertNoResult(closed)
        harness.lose()
        self.failureResultOf(d, ConnectionClosed)
        self.successResultOf(closed)
        self.successResultOf(harness.client.when_closed())

    def test_connection_lost_before_welcome(self) -> None:
        harness = Harness(TextClient)
        ready = harness.client._ready
        harness.lose(error.ConnectionLost())
        self.failureResultOf(ready, ConnectionClosed)


class TimeoutTests(unittest.SynchronousTestCase):
    def test_silent_server_times_out_and_is_dropped(self) -> None:
        harness = text_harness(timeout=5)
        first, second = harness.client.request("TIME"), harness.client.request("ECHO x")
        harness.clock.advance(4.9)
        self.assertNoResult(first)
        harness.clock.advance(0.2)
        self.assertEqual(self.failureResultOf(first, ReplyTimeout).value.timeout, 5)
        self.assertTrue(harness.transport.disconnected)
        harness.lose(error.ConnectionAborted())
        self.failureResultOf(second, ConnectionClosed)

    def test_each_reply_gets_the_full_timeout(self) -> None:
        harness = text_harness(timeout=5)
        first, second = harness.client.request("TIME"), harness.client.request("ECHO x")
        harness.clock.advance(4)
        harness.receive(b"TIME now\r\n")
        harness.clock.advance(4)
        harness.receive(b"ECHO x\r\n")
        self.assertEqual(results([first, second]), [Reply(Code.TIME, b"now"), Reply(Code.ECHO, b"x")])
        harness.clock.advance(60)
        self.assertFalse(harness.transport.disconnected)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_no_timer_while_idle_or_after_close(self) -> None:
        harness = text_harness(timeout=5)
        self.assertEqual(harness.clock.getDelayedCalls(), [])
        d = harness.client.request("TIME")
        self.assertEqual(len(harness.clock.getDelayedCalls()), 1)
        harness.lose()
        self.failureResultOf(d, ConnectionClosed)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_cancelled_request_keeps_its_slot(self) -> None:
        harness = text_harness()
        first, second = harness.client.request("ECHO one"), harness.client.request("ECHO two")
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        harness.receive(b"ECHO one\r\nECHO two\r\n")
        self.assertEqual(self.successResultOf(second), Reply(Code.ECHO, b"two"))
        self.assertEqual(harness.messages, [])


class BinaryClientTests(unittest.SynchronousTestCase):
    def test_ready_at_once_and_no_banner(self) -> None:
        harness = Harness(BinaryClient)
        self.assertIs(self.successResultOf(harness.client._ready), harness.client)
        self.assertIsNone(harness.client.banner)

    def test_text_syntax_becomes_frames(self) -> None:
        harness = Harness(BinaryClient)
        for line in (
            "ECHO hi",
            "echo  two words ",
            "rev abc",
            "REVERSE é",
            "TIME",
            "HELP",
            "help time",
            "exit",
            "quit",
        ):
            harness.client.request(line)
        self.assertEqual(
            harness.sent(),
            encode_frame(Code.ECHO, b"hi")
            + encode_frame(Code.ECHO, b"two words")
            + encode_frame(Code.REVERSE, b"abc")
            + encode_frame(Code.REVERSE, "é".encode())
            + encode_frame(Code.TIME, b"")
            + encode_frame(Code.HELP, b"")
            + encode_frame(Code.HELP, b"time")
            + encode_frame(Code.QUIT, b"")
            + encode_frame(Code.QUIT, b""),
        )

    def test_word_without_a_binary_code_is_not_sent(self) -> None:
        harness = Harness(BinaryClient)
        failure = self.failureResultOf(harness.client.request("FOO bar"), UnknownCommand)
        self.assertEqual(str(failure.value), "unknown command 'FOO' (no binary code)")
        self.failureResultOf(harness.client.request(""), RequestError)
        self.assertEqual(harness.sent(), b"")

    def test_pipelined_replies_in_pieces(self) -> None:
        harness = Harness(BinaryClient)
        pending = [harness.client.request("ECHO hi"), harness.client.request("TIME"), harness.client.request("QUIT")]
        replies = encode_frame(Code.ECHO, b"hi") + encode_frame(Code.TIME, b"now") + encode_frame(Code.QUIT, b"BYE")
        harness.receive(replies, piecewise=True)
        self.assertEqual(
            results(pending), [Reply(Code.ECHO, b"hi"), Reply(Code.TIME, b"now"), Reply(Code.QUIT, b"BYE")]
        )

    def test_raw_frames_and_any_payload_bytes(self) -> None:
        harness = Harness(BinaryClient)
        d = harness.client.request_frame(Code.ECHO, b"\x00\xff\r\n")
        self.assertEqual(harness.sent(), encode_frame(Code.ECHO, b"\x00\xff\r\n"))
        harness.receive(encode_frame(Code.ECHO, b"\x00\xff\r\n"))
        self.assertEqual(reply_line(self.successResultOf(d)), "ECHO \x00\\xff\r\n")

    def test_msg_frames_and_shutdown_bye_go_to_the_callback(self) -> None:
        harness = Harness(BinaryClient)
        d = harness.client.request("ECHO hi")
        harness.receive(encode_frame(Code.MSG, b"alice: hi") + encode_frame(Code.QUIT, b"BYE"))
        self.assertNoResult(d)
        self.assertEqual(harness.messages, [Reply(Code.MSG, b"alice: hi"), Reply(Code.QUIT, b"BYE")])
        harness.lose()
        self.failureResultOf(d, ConnectionClosed)
        self.assertEqual(len(harness.closes), 1)

    def test_error_frame_answers_the_request(self) -> None:
        harness = Harness(BinaryClient)
        d = harness.client.request_frame(0x42, b"")
        harness.receive(encode_frame(Code.ERROR, b"UNKNOWN_COMMAND"))
        self.assertEqual(self.successResultOf(d), Reply(Code.ERROR, b"UNKNOWN_COMMAND"))

    def test_frame_while_idle_is_a_message(self) -> None:
        harness = Harness(BinaryClient)
        harness.receive(encode_frame(Code.TIME, b"now"))
        self.assertEqual(harness.messages, [Reply(Code.TIME, b"now")])


class HelperTests(unittest.SynchronousTestCase):
    def test_frame_for(self) -> None:
        self.assertEqual(frame_for("ECHO Hello from client"), (Code.ECHO, b"Hello from client"))
        self.assertEqual(frame_for(b"Rev x\r\n"), (Code.REVERSE, b"x"))
        self.assertEqual(frame_for("time"), (Code.TIME, b""))
        self.assertRaises(UnknownCommand, frame_for, "MSG hi")
        self.assertRaises(RequestError, frame_for, " ")

    def test_reply_line_is_the_text_form(self) -> None:
        self.assertEqual(reply_line(Reply(Code.ECHO, b"hi")), "ECHO hi")
        self.assertEqual(reply_line(Reply(Code.QUIT, b"BYE")), "BYE")
        self.assertEqual(reply_line(Reply(Code.ERROR, b"UNKNOWN_COMMAND")), "ERROR UNKNOWN_COMMAND")
        self.assertEqual(reply_line(Reply(Code.MSG, "bob: héllo".encode())), "MSG bob: héllo")
        self.assertEqual(reply_line(Reply(0, b"NEWS today")), "NEWS today")
        self.assertEqual(reply_line(Reply(0x42, b"\xfe")), "FRAME 66 \\xfe")

    def test_unknown_mode(self) -> None:
        self.assertRaises(ValueError, connect, "tcp:127.0.0.1:1", "morse")


class EndToEndTests(unittest.TestCase):
    """The library against a real ``twistd tinytcp`` on loopback."""

    timeout = 30

    def setUp(self) -> None:
        self.server = RunningServer()
        self.addCleanup(self.server.stop)

    def endpoint(self, mode: str) -> str:
        return f"tcp:127.0.0.1:{self.server.ports[mode]}"

    async def check_session(self, mode: str) -> None:
        messages: list[Reply] = []
        client = await connect(self.endpoint(mode), mode, on_message=messages.append, timeout=10)
        if mode == "text":
            self.assertEqual(client.banner, "tinytcp 0.1 ready; type HELP")
        lines = ["ECHO Hello from client", "rev héllo", "TIME", "help echo", "ECHO", "QUIT"]
        replies = await defer.gatherResults([client.request(line) for line in lines])
        self.assertEqual(replies[0], Reply(Code.ECHO, b"Hello from client"))
        self.assertEqual(replies[1], Reply(Code.REVERSE, "olléh".encode()))
        self.assertEqual(replies[2].code, Code.TIME)
        self.assertRegex(replies[2].payload.decode(), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
        self.assertEqual(replies[3], Reply(Code.HELP, b"ECHO <text>: send the text back unchanged"))
        if mode == "text":
            self.assertEqual(replies[4], Reply(Code.ERROR, b"BAD_ARGUMENTS"))
        else:
            self.assertEqual(replies[4], Reply(Code.ECHO, b""))
        self.assertEqual(replies[5], Reply(Code.QUIT, b"BYE"))
        await client.when_closed()
        self.assertEqual(messages, [])

    def test_text_session(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_session("text"))

    def test_binary_session(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_session("binary"))

    async def check_many_pipelined(self, mode: str) -> None:
        client = await connect(self.endpoint(mode), mode, timeout=10)
        lines = [f"ECHO {n}" for n in range(500)]
        replies = await defer.gatherResults([client.request(line) for line in lines])
        self.assertEqual([reply.payload for reply in replies], [str(n).encode() for n in range(500)])
        await client.close()

    def test_many_pipelined_text(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_many_pipelined("text"))

    def test_many_pipelined_binary(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_many_pipelined("binary"))

    async def check_shutdown(self, mode: str) -> None:
        messages: list[Reply] = []
        closes: list[Failure] = []
        client = await connect(
            self.endpoint(mode), mode, on_message=messages.append, on_close=closes.append, timeout=10
        )
        self.assertEqual(await client.request("ECHO before"), Reply(Code.ECHO, b"before"))
        closed = client.when_closed()
        await threads.deferToThread(self.server.stop)
        await closed
        self.assertEqual(messages, [Reply(Code.QUIT, b"BYE")])
        self.assertEqual(len(closes), 1)
        with self.assertRaises(ConnectionClosed):
            await client.request("TIME")

    def test_shutdown_notice_text(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_shutdown("text"))

    def test_shutdown_notice_binary(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_shutdown("binary"))

    async def check_chat(self, mode: str) -> None:
        from twisted.internet import reactor

        inbox = Inbox()
        ann = await connect(self.endpoint(mode), mode, on_message=inbox, timeout=10)
        bob = await connect(self.endpoint("text"), "text", timeout=10)
        self.assertEqual(await ann.request("NICK ann"), Reply(Code.NICK, b"ann"))
        self.assertEqual(await bob.request("NICK bob"), Reply(Code.NICK, b"bob"))
        await inbox.wait(1, reactor)
        # ann's requests are in flight while bob's message is pushed to her
        pending = [ann.request(f"ECHO {n}") for n in range(50)]
        self.assertEqual(await bob.request("SAY hi ann"), Reply(Code.SAY, b"1"))
        replies = await defer.gatherResults(pending)
        self.assertEqual([reply.payload for reply in replies], [str(n).encode() for n in range(50)])
        await inbox.wait(2, reactor)
        self.assertEqual(inbox.messages, [Reply(Code.MSG, b"* bob joined"), Reply(Code.MSG, b"bob hi ann")])
        await bob.quit()
        await inbox.wait(3, reactor)
        self.assertEqual(inbox.messages[2], Reply(Code.MSG, b"* bob left"))
        await ann.close()

    def test_chat_messages_text(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_chat("text"))

    def test_chat_messages_binary(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_chat("binary"))

    async def check_refused(self) -> None:
        from twisted.internet import reactor

        port = free_port()
        with self.assertRaises(error.ConnectionRefusedError):
            await connect(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), timeout=10)

    def test_refused(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_refused())
