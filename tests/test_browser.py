"""The web page in a real browser (headless Chromium) against the real ``twistd tinytcp --web-port``."""

from __future__ import annotations

import subprocess
import sys
import unittest

from twisted.trial.unittest import SynchronousTestCase

from tests.browser import (
    MISSING,
    PHONE_SCREENSHOT,
    ROOT,
    SCREENSHOT,
    chromium,
    page_digest,
    png_stamp,
    require_browser,
    text_of,
    wait_for,
)
from tests.support import RunningServer, read_lines
from tests.wsclient import WebSocketClient

SKIP = MISSING if MISSING and not require_browser() else None


def typing(driver: object, text: str) -> None:
    """Type into whatever has the keyboard focus, as a person would."""
    driver.switch_to.active_element.send_keys(text)  # type: ignore[attr-defined]


def focused(driver: object) -> str:
    return driver.switch_to.active_element.get_attribute("id")  # type: ignore[attr-defined]


@unittest.skipIf(SKIP, SKIP)
class BrowserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = RunningServer("--web-port", "0")
        self.addCleanup(self.server.stop)
        self.web_port = self.server.ports_of("web", 1)[0]
        self.url = f"http://127.0.0.1:{self.web_port}/"
        self.driver = chromium()
        self.addCleanup(self.driver.quit)

    def test_chat_both_ways_console_and_live_status_with_the_keyboard_alone(self) -> None:
        from selenium.webdriver.common.keys import Keys

        driver = self.driver
        driver.get(self.url)
        wait_for(driver, lambda d: "Connected: tinytcp 0.1 ready" in text_of(d, "connection"), what="WELCOME")
        wait_for(driver, lambda d: focused(d) == "nick", what="the nick box to have the focus")
        typing(driver, "ann" + Keys.ENTER)
        wait_for(driver, lambda d: text_of(d, "join-title") == "You are ann", what="NICK ann")
        self.assertEqual(focused(driver), "message")
        wait_for(driver, lambda d: "ann (you)" in text_of(d, "people"), what="ann in the people list")

        with self.server.connect() as bob, self.server.connect() as guest:
            read_lines(bob, 1)
            read_lines(guest, 1)
            bob.sendall(b"NICK bob\n")
            self.assertEqual(read_lines(bob, 1), [b"NICK bob"])
            wait_for(driver, lambda d: "bob joined" in text_of(d, "chat"), what="bob's arrival")
            wait_for(driver, lambda d: "bob" in text_of(d, "people").split("\n"), what="bob in the people list")
            # the guest has no nick, so nothing is announced: only the page's own polling can count it
            wait_for(driver, lambda d: "online\n3" in text_of(d, "status"), what="the status to count 3 clients")
            self.assertIn("From INFO clients", text_of(driver, "status-source"))

            typing(driver, "hello bob 👋" + Keys.ENTER)
            self.assertEqual(read_lines(bob, 1), ["MSG ann hello bob 👋".encode()])
            wait_for(driver, lambda d: "ann hello bob 👋" in text_of(d, "chat"), what="ann's own message")
            bob.sendall(b"SAY hi ann, from a socket\n")
            self.assertEqual(read_lines(bob, 1), [b"SAID 2"])
            wait_for(driver, lambda d: "bob hi ann, from a socket" in text_of(d, "chat"), what="bob's message")

            # from the message box, Tab reaches Send, the console's log, then its command box
            typing(driver, Keys.TAB + Keys.TAB + Keys.TAB)
            self.assertEqual(focused(driver), "command")
            typing(driver, "rev stressed" + Keys.ENTER)
            wait_for(driver, lambda d: "REVERSE desserts" in text_of(d, "console-log"), what="the console's reply")
            self.assertEqual(text_of(driver, "console-log").split("\n")[-2:], ["> rev stressed", "REVERSE desserts"])
            typing(driver, "DANCE" + Keys.ENTER)
            wait_for(driver, lambda d: "ERROR UNKNOWN_COMMAND" in text_of(d, "console-log"), what="the error reply")
            typing(driver, Keys.ARROW_UP + Keys.ARROW_UP)
            self.assertEqual(driver.switch_to.active_element.get_attribute("value"), "rev stressed")

        wait_for(driver, lambda d: "bob left" in text_of(d, "chat"), what="bob's departure")
        wait_for(driver, lambda d: "online\n1" in text_of(d, "status"), what="the status to count 1 client")

    def test_stopping_the_server_is_shown_and_reconnect_has_the_focus(self) -> None:
        driver = self.driver
        driver.get(self.url)
        wait_for(driver, lambda d: "Connected" in text_of(d, "connection"), what="WELCOME")
        self.server.stop()
        wait_for(driver, lambda d: "the server is stopping" in text_of(d, "connection"), what="the close")
        self.assertIn("The server said goodbye.", text_of(driver, "chat"))
        self.assertEqual(focused(driver), "reconnect")
        self.assertFalse(driver.find_element("id", "message").is_enabled())

    def test_a_full_server_says_so(self) -> None:
        full = RunningServer("--web-port", "0", "--max-connections", "1")
        self.addCleanup(full.stop)
        with full.connect() as telnet:
            read_lines(telnet, 1)
            self.driver.get(f"http://127.0.0.1:{full.ports_of('web', 1)[0]}/")
            wait_for(self.driver, lambda d: not d.find_element("id", "reconnect").get_attribute("hidden"), what="close")
            self.assertEqual(text_of(self.driver, "connection"), "Refused: ERROR BUSY")

    def test_reads_well_on_a_phone(self) -> None:
        driver = self.driver
        driver.set_window_size(390, 844)
        driver.get(self.url)
        wait_for(driver, lambda d: "Connected" in text_of(d, "connection"), what="WELCOME")
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        self.assertLessEqual(width[0], width[1], "the page scrolls sideways")
        lefts = [driver.find_element("id", i).rect["x"] for i in ("join-panel", "chat-panel", "side", "console-panel")]
        self.assertEqual(len(set(lefts)), 1, f"not one column: {lefts}")
        font = driver.execute_script("return getComputedStyle(document.getElementById('nick')).fontSize")
        self.assertEqual(font, "16px")  # below 16px, phones zoom into the box when it gets the focus

    def accounts_server(self) -> str:
        """A server with accounts (and fast hashing, for the test); the page's address."""
        server = RunningServer("--web-port", "0", "--allow-register", "--bcrypt-rounds", "4")
        self.addCleanup(server.stop)
        self.server = server
        return f"http://127.0.0.1:{server.ports_of('web', 1)[0]}/"

    def test_log_in_to_an_account_and_chat_under_its_name(self) -> None:
        from selenium.webdriver.common.keys import Keys

        url = self.accounts_server()
        with self.server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"REGISTER ann s3cret-pw\nLOGOUT\n")
            self.assertEqual(read_lines(sock, 2), [b"REGISTER ann", b"LOGOUT"])
        driver = self.driver
        driver.get(url)
        wait_for(driver, lambda d: d.find_element("id", "login").is_displayed(), what="the login form")
        driver.find_element("id", "user").send_keys("ann")
        driver.find_element("id", "password").send_keys("wrong-pw" + Keys.ENTER)
        wait_for(driver, lambda d: "Wrong user name or password" in text_of(d, "login-error"), what="AUTH_FAILED")
        self.assertEqual(driver.find_element("id", "password").get_attribute("value"), "")
        driver.find_element("id", "password").send_keys("s3cret-pw" + Keys.ENTER)
        wait_for(driver, lambda d: text_of(d, "join-title") == "You are ann", what="LOGIN ann")
        self.assertFalse(driver.find_element("id", "login").is_displayed())
        with self.server.connect() as bob:
            read_lines(bob, 1)
            typing(driver, "hello from an account" + Keys.ENTER)
            self.assertEqual(read_lines(bob, 1), [b"MSG ann hello from an account"])
        self.assertNotIn("s3cret-pw", self.server.log)

    def test_the_console_hides_passwords(self) -> None:
        from selenium.webdriver.common.keys import Keys

        driver = self.driver
        driver.get(self.accounts_server())
        wait_for(driver, lambda d: "Connected" in text_of(d, "connection"), what="WELCOME")
        driver.find_element("id", "command").send_keys("LOGIN nobody not-a-password" + Keys.ENTER)
        wait_for(driver, lambda d: "ERROR AUTH_FAILED" in text_of(d, "console-log"), what="the console's reply")
        self.assertIn("> LOGIN nobody ***", text_of(driver, "console-log"))
        self.assertNotIn("not-a-password", text_of(driver, "console-log"))

    def test_status_comes_from_info(self) -> None:
        driver = self.driver
        driver.get(self.url)
        wait_for(driver, lambda d: "online\n1\ntext and web\n1" in text_of(d, "status"), what="INFO clients")
        self.assertIn("From INFO clients", text_of(driver, "status-source"))
        self.assertIn("limit\n10000", text_of(driver, "status"))
        other = WebSocketClient(self.web_port)
        self.addCleanup(other.close)
        wait_for(driver, lambda d: "online\n2" in text_of(d, "status"), what="INFO to count the second client")

    def test_status_comes_from_who_when_the_server_has_no_info(self) -> None:
        older = subprocess.Popen(
            [sys.executable, "-m", "tests.no_info_server"], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        self.addCleanup(older.wait, 10)
        self.addCleanup(older.terminate)
        assert older.stdout is not None
        port = int(older.stdout.readline().decode().rsplit(":", 1)[1])
        driver = self.driver
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, lambda d: "online\n1\nin the chat\n0" in text_of(d, "status"), what="WHO counts")
        self.assertIn("From WHO", text_of(driver, "status-source"))
        other = WebSocketClient(port)
        self.addCleanup(other.close)
        wait_for(driver, lambda d: "online\n2" in text_of(d, "status"), what="WHO to count the second client")

    def test_status_parsing(self) -> None:
        driver = self.driver
        driver.get(self.url)
        wait_for(driver, lambda d: "Connected" in text_of(d, "connection"), what="WELCOME")
        found = driver.execute_script(
            "return [tinytcp.helpHasInfo('HELP TIME INFO QUIT'), tinytcp.helpHasInfo('HELP TIME WHO QUIT'),"
            " tinytcp.parseInfo('INFO clients:3 text:2 odd web:1'), tinytcp.parseWho('WHO ann bob +2')]"
        )
        self.assertEqual(
            found,
            [True, False, [["clients", "3"], ["text", "2"], ["web", "1"]], {"nicks": ["ann", "bob"], "guests": 2}],
        )


class ScreenshotTests(SynchronousTestCase):
    def test_the_screenshots_in_the_docs_show_the_current_page(self) -> None:
        for path in (SCREENSHOT, PHONE_SCREENSHOT):
            self.assertEqual(
                png_stamp(path.read_bytes()),
                page_digest(),
                f"tinytcp/web/static/ changed since docs/{path.name} was taken: run python -m tests.screenshot",
            )
