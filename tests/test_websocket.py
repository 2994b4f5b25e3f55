"""The WebSocket bridge and the web page's HTTP side, byte for byte on a StringTransport and a fake clock."""

from __future__ import annotations

import re

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import INegotiated
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from tests.helpers import connect, make_server
from tests.wsclient import BINARY, CLOSE, PING, PONG, TEXT, client_frame, close_code, frame_header, parse_frames
from tests.wsclient import upgrade_request as upgrade
from tinytcp.protocol.wsguard import MessageSizeGuard
from tinytcp.server.state import QUIET, Server
from tinytcp.server.text import TextProtocol
from tinytcp.server.websocket import GOING_AWAY, MESSAGE_TOO_BIG, NORMAL, WebSocketBridge
from tinytcp.web.site import POLICY, make_site

HOST = "127.0.0.1:8080"
ORIGIN = "http://" + HOST
WELCOME = "WELCOME tinytcp 0.1 ready; type HELP"


class Browser:
    """One HTTP connection to the web resources, upgraded to a WebSocket unless told otherwise."""

    def __init__(self, server: Server, origins: tuple[str, ...] = (), port: int = 5555) -> None:
        self.site = make_site(server, origins, reactor=server.reactor)
        self.channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=IPv4Address("TCP", "127.0.0.1", port)
        )
        self.channel.makeConnection(self.transport)
        self._seen = 0
        self.head = ""

    def get(self, path: str, method: bytes = b"GET", body: bytes = b"") -> tuple[str, bytes]:
        """A plain HTTP request: the response head and body."""
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        head = f"{method.decode()} {path} HTTP/1.1\r\nHost: {HOST}\r\n{length}Connection: close\r\n\r\n"
        self.channel.dataReceived(head.encode() + body)
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        return head.decode("latin-1"), body

    def open(self, origin: str | None = ORIGIN, host: str = HOST) -> str:
        """Send the upgrade request; the response's status line."""
        self.channel.dataReceived(upgrade(host, origin=origin))
        head, _, _ = self.transport.value().partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        self._seen = len(head) + 4
        return self.head.split("\r\n")[0]

    def send(self, data: bytes | str, opcode: int = TEXT) -> None:
        self.channel.dataReceived(client_frame(opcode, data.encode() if isinstance(data, str) else data))

    def frames(self) -> list[tuple[int, bytes]]:
        """Frames the server sent since the last call."""
        frames, rest = parse_frames(self.transport.value()[self._seen :])
        self._seen = len(self.transport.value()) - len(rest)
        return frames

    def messages(self) -> list[str]:
        """Text messages since the last call; a close frame shows as CLOSE <code>."""
        out = []
        for opcode, payload in self.frames():
            if opcode == TEXT:
                out.append(payload.decode("utf-8"))
            elif opcode == CLOSE:
                out.append(f"CLOSE {close_code(payload)}")
        return out

    def lose(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


class BridgeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server()
        self.browser = Browser(self.server)
        self.assertEqual(self.browser.open(), "HTTP/1.1 101 Switching Protocols")

    def test_welcome_then_one_reply_per_message(self) -> None:
        self.assertEqual(self.browser.messages(), [WELCOME])
        self.browser.send("ECHO  hello  world ")
        self.browser.send("rev ab👍🏽")
        self.browser.send("   ")
        self.browser.send("DANCE")
        self.assertEqual(self.browser.messages(), ["ECHO hello  world", "REVERSE 👍🏽ba", "ERROR UNKNOWN_COMMAND"])

    def test_no_compression_is_negotiated(self) -> None:
        # frame lengths are message lengths only without permessage-deflate: the size guard relies on it
        self.assertNotIn("sec-websocket-extensions", self.browser.head.lower())

    def test_chat_with_a_text_client_both_ways(self) -> None:
        telnet, telnet_transport = connect(TextProtocol, self.server, port=6000)
        telnet.dataReceived(b"NICK tel\n")
        self.browser.messages()
        self.browser.send("NICK web")
        self.assertEqual(self.browser.messages(), ["NICK web"])
        self.assertIn(b"MSG * web joined\r\n", telnet_transport.value())
        self.browser.send("SAY hi tel")
        self.assertEqual(self.browser.messages(), ["SAID 1"])
        self.assertTrue(telnet_transport.value().endswith(b"MSG web hi tel\r\n"))
        telnet.dataReceived(b"SAY hi web\nWHO\n")
        self.assertEqual(self.browser.messages(), ["MSG tel hi web"])
        self.assertTrue(telnet_transport.value().endswith(b"SAID 1\r\nWHO tel web\r\n"))

    def test_a_message_with_a_line_break_is_refused_and_the_connection_stays(self) -> None:
        self.browser.messages()
        self.browser.send("ECHO a\nECHO b")
        self.browser.send("ECHO a\r")
        self.browser.send("ECHO c")
        self.assertEqual(self.browser.messages(), ["ERROR BAD_ARGUMENTS", "ECHO a", "ECHO c"])

    def test_binary_messages_must_be_utf8_text(self) -> None:
        self.browser.messages()
        self.browser.send("ECHO é", opcode=BINARY)
        self.browser.send(b"ECHO \xff", opcode=BINARY)
        self.assertEqual(self.browser.messages(), ["ECHO é", "ERROR BAD_ENCODING"])

    def test_a_text_message_that_is_not_utf8_closes_with_1007(self) -> None:
        self.browser.messages()
        self.browser.send("ECHO ok")
        self.browser.send(b"ECHO \xff", opcode=TEXT)
        self.assertEqual(self.browser.messages(), ["ECHO ok", "CLOSE 1007"])
        self.assertTrue(self.browser.transport.disconnecting)

    def test_ping_is_answered(self) -> None:
        self.browser.frames()
        self.browser.send(b"are you there", opcode=PING)
        self.assertEqual(self.browser.frames(), [(PONG, b"are you there")])

    def test_the_text_protocol_is_the_tcp_producer(self) -> None:
        producer = self.browser.transport.producer
        self.assertIsInstance(producer, TextProtocol)
        producer.pauseProducing()
        self.assertEqual(self.browser.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.browser.transport.producerState, "producing")

    def test_client_close_is_answered_and_leaves_the_room(self) -> None:
        telnet, telnet_transport = connect(TextProtocol, self.server, port=6000)
        self.browser.send("NICK web")
        telnet.dataReceived(b"NICK tel\n")
        self.assertEqual(self.browser.messages()[-1], "MSG * tel joined")
        self.browser.send(b"\x03\xe8", opcode=CLOSE)
        self.assertEqual(self.browser.messages(), ["CLOSE 1000"])
        self.assertTrue(self.browser.transport.disconnecting)
        telnet.dataReceived(b"SAY still there?\n")  # pushed between the close and connectionLost: dropped
        self.assertEqual(self.browser.messages(), [])
        self.browser.lose()
        self.assertEqual(len(self.server.connections), 1)
        self.assertTrue(telnet_transport.value().endswith(b"MSG * web left\r\n"))


class LimitTests(SynchronousTestCase):
    def browser(self, **settings: object) -> tuple[Server, Browser]:
        server = make_server(**settings)
        browser = Browser(server)
        browser.open()
        browser.messages()
        return server, browser

    def test_a_message_over_max_line_is_refused_at_its_header(self) -> None:
        _, browser = self.browser(max_line=100)
        browser.send("ECHO " + "x" * 95)  # exactly 100 bytes
        self.assertEqual(browser.messages(), ["ECHO " + "x" * 95])
        # earlier messages in the same read are answered; the header alone of the long one is refused
        browser.channel.dataReceived(client_frame(TEXT, b"ECHO 1") + frame_header(TEXT, 101))
        self.assertEqual(browser.messages(), ["ECHO 1", "ERROR LINE_TOO_LONG", f"CLOSE {MESSAGE_TOO_BIG}"])
        self.assertTrue(browser.transport.disconnecting)
        browser.channel.dataReceived(b"x" * 101 + client_frame(TEXT, b"ECHO late"))
        self.assertEqual(browser.messages(), [])

    def test_an_enormous_announced_length_allocates_nothing(self) -> None:
        _, browser = self.browser(max_line=100)
        browser.channel.dataReceived(frame_header(TEXT, 1 << 62))
        self.assertEqual(browser.messages(), ["ERROR LINE_TOO_LONG", f"CLOSE {MESSAGE_TOO_BIG}"])

    def test_an_oversized_control_frame_is_a_protocol_error(self) -> None:
        # the guard lets control frames through: Twisted's parser (wsproto) refuses any over 125 bytes
        _, browser = self.browser(max_line=100)
        browser.channel.dataReceived(frame_header(PING, 1 << 40) + b"x" * 5000)
        self.assertEqual(browser.messages(), ["CLOSE 1002"])
        self.assertTrue(browser.transport.disconnecting)

    def test_fragments_count_together(self) -> None:
        _, browser = self.browser(max_line=100)
        browser.channel.dataReceived(client_frame(TEXT, b"ECHO " + b"y" * 55, fin=False))
        browser.channel.dataReceived(client_frame(PING, b"p"))
        self.assertEqual(browser.messages(), [])
        browser.channel.dataReceived(frame_header(0, 41))
        self.assertEqual(browser.messages(), ["ERROR LINE_TOO_LONG", f"CLOSE {MESSAGE_TOO_BIG}"])

    def test_fragments_within_the_limit_are_one_line(self) -> None:
        _, browser = self.browser(max_line=100)
        data = client_frame(TEXT, b"ECHO ab", fin=False) + client_frame(0, b"cd", fin=False) + client_frame(0, b"ef")
        for i in range(len(data)):
            browser.channel.dataReceived(data[i : i + 1])
        self.assertEqual(browser.messages(), ["ECHO abcdef"])

    def test_idle_timeout(self) -> None:
        server, browser = self.browser(idle_timeout=10)
        server.reactor.advance(9)
        browser.send("ECHO awake")
        server.reactor.advance(9)
        self.assertEqual(browser.messages(), ["ECHO awake"])
        server.reactor.advance(1)
        self.assertEqual(browser.messages(), ["ERROR IDLE_TIMEOUT", f"CLOSE {NORMAL}"])
        self.assertTrue(browser.transport.disconnecting)

    def test_connection_limit_counts_websockets(self) -> None:
        server, _ = self.browser(max_connections=1)
        second = Browser(server, port=5556)
        second.open()
        self.assertEqual(second.messages(), ["ERROR BUSY", f"CLOSE {NORMAL}"])
        _, telnet_transport = connect(TextProtocol, server, port=6000)
        self.assertEqual(telnet_transport.value(), b"ERROR BUSY\r\n")

    def test_slow_consumer(self) -> None:
        server, browser = self.browser(max_frame=1, max_pending=1, say_rate=0)
        telnet, _ = connect(TextProtocol, server, port=6000)
        browser.transport.producer.pauseProducing()
        for _ in range(70):
            telnet.dataReceived(b"SAY " + b"z" * 1000 + b"\n")
        *pushed, slow, closed = browser.messages()
        self.assertEqual([slow, closed], ["ERROR SLOW_CONSUMER", f"CLOSE {NORMAL}"])
        # the effective limit is --max-frame + 64 KiB = 65537 bytes of lines of 1000 bytes and more
        self.assertEqual(len(pushed), 65537 // len(pushed[0] + "\r\n"))
        self.assertTrue(all(line == pushed[0] for line in pushed))

    def test_shutdown_answers_then_says_bye(self) -> None:
        server, browser = self.browser()
        done = server.shutdown()
        browser.send("ECHO last")
        server.reactor.advance(QUIET)
        server.reactor.advance(QUIET)
        self.assertEqual(browser.messages(), ["ECHO last", "BYE", f"CLOSE {GOING_AWAY}"])
        self.assertTrue(browser.transport.disconnecting)
        self.assertNoResult(done)
        browser.lose()
        self.successResultOf(done)

    def test_refused_when_twisted_upgrades_differently(self) -> None:
        server = make_server()

        class Channel:
            def dataReceived(self, data: bytes) -> None:
                """Not the WebSocket protocol's."""

        class Request:
            channel = Channel()

        class Wire:
            transport = StringTransport()

            def dataReceived(self, data: bytes) -> None:
                """Twisted's frame parser."""

        bridge = WebSocketBridge(server, Request())  # type: ignore[arg-type]
        bridge.negotiationStarted(Wire())  # type: ignore[arg-type]
        bridge.negotiationFinished()
        self.assertTrue(Wire.transport.disconnecting)
        self.assertEqual(server.connections, set())


class OriginTests(SynchronousTestCase):
    def status(self, origin: str | None, origins: tuple[str, ...] = (), host: str = HOST) -> str:
        return Browser(make_server(), origins).open(origin, host)

    def test_same_origin_only_by_default(self) -> None:
        self.assertIn("101", self.status(ORIGIN))
        self.assertIn("101", self.status("HTTP://127.0.0.1:8080"))
        self.assertIn("101", self.status("http://localhost", host="LOCALHOST:80"))
        self.assertIn("403", self.status("http://evil.example"))
        self.assertIn("403", self.status("http://127.0.0.1:8081"))
        self.assertIn("403", self.status("https://127.0.0.1:8080"))
        self.assertIn("403", self.status("null"))

    def test_no_origin_is_not_a_browser(self) -> None:
        self.assertIn("101", self.status(None))

    def test_web_origin_allows_others(self) -> None:
        self.assertIn("101", self.status("https://chat.example", origins=("https://chat.example:443",)))
        self.assertIn("403", self.status("http://chat.example", origins=("https://chat.example",)))
        self.assertIn("101", self.status("http://anything.example", origins=("*",)))


class PageTests(SynchronousTestCase):
    def test_page_and_files(self) -> None:
        for path, kind, start in (
            ("/", "text/html", b"<!doctype html>"),
            ("/app.js", "text/javascript", b"// tinytcp"),
            ("/style.css", "text/css", b"/* tinytcp"),
        ):
            head, body = Browser(make_server()).get(path)
            self.assertIn("200 OK", head.split("\r\n")[0])
            self.assertIn(f"Content-Type: {kind}; charset=utf-8", head)
            self.assertIn(f"Content-Security-Policy: {POLICY}", head)
            self.assertTrue(body.startswith(start), body[:40])

    def test_the_page_loads_nothing_from_other_hosts(self) -> None:
        page = Browser(make_server()).get("/")[1]
        self.assertEqual(set(re.findall(rb'(?:src|href)="([^"]*)"', page)), {b"style.css", b"app.js"})
        script = Browser(make_server()).get("/app.js")[1]
        style = Browser(make_server()).get("/style.css")[1]
        for body in (page, script, style):
            found = re.search(rb"https?://|url\(|@import|fetch\(|XMLHttpRequest|import\(", body)
            self.assertIsNone(found, found and found.group())
        self.assertIn(b'new WebSocket(scheme + location.host + "/ws")', script)

    def test_a_request_body_is_never_stored(self) -> None:
        browser = Browser(make_server(max_line=1000))
        browser.channel.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n")
        browser.channel.dataReceived(b"x" * 1000)
        self.assertFalse(browser.transport.disconnecting)
        browser.channel.dataReceived(b"x" * 1000)
        self.assertTrue(browser.transport.disconnecting)
        self.assertEqual(browser.transport.value(), b"")

    def test_a_small_body_gets_an_answer(self) -> None:
        head, _ = Browser(make_server()).get("/", b"POST", b"hello")
        self.assertIn("405", head.split("\r\n")[0])

    def test_unknown_path(self) -> None:
        head, _ = Browser(make_server()).get("/nope")
        self.assertIn("404", head.split("\r\n")[0])

    def test_plain_get_of_ws_is_not_an_upgrade(self) -> None:
        head, _ = Browser(make_server()).get("/ws")
        self.assertIn("400", head.split("\r\n")[0])


class GuardTests(SynchronousTestCase):
    def test_byte_by_byte(self) -> None:
        stream = client_frame(TEXT, b"a" * 10) + client_frame(PING, b"p" * 125) + client_frame(TEXT, b"b" * 300)
        guard = MessageSizeGuard(300)
        self.assertEqual([guard.feed(stream[i : i + 1]) for i in range(len(stream))], [None] * len(stream))
        guard = MessageSizeGuard(299)
        results = [guard.feed(stream[i : i + 1]) for i in range(len(stream))]
        # the last byte of the third header (2 bytes, a 16-bit length, the 4-byte mask)
        broken = len(client_frame(TEXT, b"a" * 10) + client_frame(PING, b"p" * 125)) + 7
        self.assertEqual(results.index(0), broken)

    def test_offset_of_the_breaking_header(self) -> None:
        first = client_frame(TEXT, b"ok")
        self.assertEqual(MessageSizeGuard(10).feed(first + frame_header(BINARY, 11)), len(first))


class SecureBridgeTests(SynchronousTestCase):
    """Over wss the page's credentials are encrypted: the text protocol's session says TLS."""

    def session_tls(self, secure: bool) -> bool:
        server = make_server()
        browser = Browser(server)
        if secure:
            directlyProvides(browser.transport, INegotiated)
        self.assertIn("101", browser.open(origin=f"{'https' if secure else 'http'}://{HOST}"))
        (connection,) = server.connections
        return connection.session.tls

    def test_wss_is_tls_and_ws_is_not(self) -> None:
        self.assertTrue(self.session_tls(secure=True))
        self.assertFalse(self.session_tls(secure=False))
