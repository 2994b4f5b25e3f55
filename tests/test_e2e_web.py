"""The web port on the real ``twistd tinytcp``: the page, the WebSocket and every limit of the TCP listeners."""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from tests.support import RunningServer, read_lines
from tests.test_attack import MiB, echo_line, rss, wait_until_stalled
from tests.wsclient import TEXT, WebSocketClient, client_frame, frame_header

WELCOME = "WELCOME tinytcp 0.1 ready; type HELP"


def web_server(*args: str) -> tuple[RunningServer, int]:
    server = RunningServer("--web-port", "0", *args)
    return server, server.ports_of("web", 1)[0]


class WebEndToEndTests(SynchronousTestCase):
    def test_page_and_a_browser_chatting_with_a_text_client(self) -> None:
        server, port = web_server()
        self.addCleanup(server.stop)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            self.assertEqual(response.headers["Content-Type"], "text/html; charset=utf-8")
            self.assertIn("default-src 'none'", response.headers["Content-Security-Policy"])
            self.assertIn(b'<script src="app.js" defer></script>', response.read())
        web = WebSocketClient(port, origin=f"http://127.0.0.1:{port}")
        self.addCleanup(web.close)
        self.assertEqual(web.status, 101)
        self.assertEqual(web.messages(1), [WELCOME])
        with server.connect() as telnet:
            read_lines(telnet, 1)
            telnet.sendall(b"NICK tel\n")
            self.assertEqual(read_lines(telnet, 1), [b"NICK tel"])
            web.send("NICK web")
            self.assertEqual(web.messages(1), ["NICK web"])
            self.assertEqual(read_lines(telnet, 1), [b"MSG * web joined"])
            web.send("SAY héllo from the browser 👋")
            self.assertEqual(web.messages(1), ["SAID 1"])
            self.assertEqual(read_lines(telnet, 1), ["MSG web héllo from the browser 👋".encode()])
            telnet.sendall(b"SAY hi browser\nQUIT\n")
            self.assertEqual(read_lines(telnet, 2), [b"SAID 1", b"BYE"])
            self.assertEqual(web.messages(2), ["MSG tel hi browser", "MSG * tel left"])
        web.send("WHO")
        web.send("QUIT")
        self.assertEqual(web.until_close(), (["WHO web", "BYE"], 1000))
        server.wait_for_log(r"WebSocket opened at /ws")

    def test_a_message_over_max_line_is_refused_before_its_payload_is_sent(self) -> None:
        server, port = web_server("--max-line", "1000")
        self.addCleanup(server.stop)
        web = WebSocketClient(port)
        self.addCleanup(web.close)
        web.messages(1)
        web.sock.sendall(client_frame(TEXT, b"ECHO fits") + frame_header(TEXT, 10 * MiB))
        self.assertEqual(web.until_close(), (["ECHO fits", "ERROR LINE_TOO_LONG"], 1009))
        server.wait_for_log(r"closing: WebSocket message longer than --max-line \(1000 bytes\)")

    def test_origin_check(self) -> None:
        server, port = web_server("--web-origin", "https://chat.example")
        self.addCleanup(server.stop)
        self.assertEqual(WebSocketClient(port, origin="http://evil.example").status, 403)
        self.assertEqual(WebSocketClient(port, origin="https://chat.example").status, 101)
        self.assertEqual(WebSocketClient(port, origin=f"http://127.0.0.1:{port}").status, 101)
        server.wait_for_log(r"refused WebSocket from origin 'http://evil.example' \(--web-origin\)")

    def test_sigterm_answers_then_says_bye_with_going_away(self) -> None:
        server, port = web_server()
        web = WebSocketClient(port)
        self.addCleanup(web.close)
        web.messages(1)
        web.send("ECHO before the signal")
        self.assertEqual(web.messages(1), ["ECHO before the signal"])
        server.process.send_signal(signal.SIGTERM)
        self.assertEqual(web.until_close(), (["BYE"], 1001))
        self.assertEqual(server.stop(), -signal.SIGTERM)

    def test_idle_timeout_and_connection_limit(self) -> None:
        server, port = web_server("--idle-timeout", "1", "--max-connections", "1")
        self.addCleanup(server.stop)
        first = WebSocketClient(port)
        self.addCleanup(first.close)
        self.assertEqual(first.messages(1), [WELCOME])
        second = WebSocketClient(port)
        self.addCleanup(second.close)
        self.assertEqual(second.until_close(), (["ERROR BUSY"], 1000))
        started = time.monotonic()
        self.assertEqual(first.until_close(), (["ERROR IDLE_TIMEOUT"], 1000))
        self.assertLess(time.monotonic() - started, 5)

    def test_wss_on_a_tls_endpoint(self) -> None:
        import twisted.test

        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        server = RunningServer("--web-port", f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}")
        self.addCleanup(server.stop)
        port = server.ports_of("web", 1)[0]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        web = WebSocketClient(port, origin=f"https://127.0.0.1:{port}", tls=context)
        self.addCleanup(web.close)
        self.assertEqual(web.status, 101)
        web.send("ECHO over wss")
        self.assertEqual(web.messages(2), [WELCOME, "ECHO over wss"])
        # the page's own origin is https here: an http page of the same host is another origin
        self.assertEqual(WebSocketClient(port, origin=f"http://127.0.0.1:{port}", tls=context).status, 403)

    def test_a_browser_that_does_not_read_does_not_grow_server_memory(self) -> None:
        server, port = web_server("--idle-timeout", "0")
        self.addCleanup(server.stop)
        web = WebSocketClient(port, timeout=60)
        self.addCleanup(web.close)
        web.messages(1)
        before = rss(server.process.pid)
        count = 64 * MiB // len(echo_line(0))
        sent = [0]

        def write() -> None:
            batch = 256
            for start in range(0, count, batch):
                stop = min(count, start + batch)
                frames = b"".join(client_frame(TEXT, echo_line(i), mask=b"\0\0\0\0") for i in range(start, stop))
                web.sock.sendall(frames)
                sent[0] = stop

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_until_stalled(sent)
        self.assertLess(sent[0], count, "the writer was never held back")
        grown = rss(server.process.pid) - before
        self.assertLess(grown, 64 * MiB, f"server RSS grew by {grown / MiB:.1f} MiB")
        for i in range(count):
            self.assertEqual(web.messages(1), [echo_line(i).decode()])
        writer.join(10)
