"""``tinytcp-client`` at a prompt, driven through a pseudo-terminal with pexpect.

prompt_toolkit draws with cursor movements and erases, so the raw output is not what a
person sees.  ``Screen`` replays the output like a (very small) terminal, and the tests
check the resulting lines: a reply under its prompt line, and the line being typed
redrawn under a message that arrived meanwhile.
"""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

from twisted.trial import unittest

from tests.support import RunningServer

try:
    import pexpect
except ImportError:  # pragma: no cover - pexpect is in the test extra
    pexpect = None

CSI = re.compile(r"\x1b\[([?0-9;]*)([@-~])")
PARTIAL_ESCAPE = re.compile(r"\x1b(\[[?0-9;]*)?$")
WAIT = 15.0


class Screen:
    """Enough of a VT100 for prompt_toolkit's output: text, CR, LF, cursor moves and erases.

    Rows are never scrolled away, so ``lines`` is the whole session as it would read.
    """

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.col = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""

    @property
    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]

    @property
    def cursor_line(self) -> str:
        return "".join(self.rows[self.row]).rstrip()

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        index = 0
        while index < len(text):
            char = text[index]
            if char == "\x1b":
                match = CSI.match(text, index)
                if match:
                    self._csi(match.group(1), match.group(2))
                    index = match.end()
                    continue
                if PARTIAL_ESCAPE.match(text, index):
                    self._pending = text[index:]
                    return
                index += 2  # a two-byte escape such as ESC =
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self._down(1)
            elif char == "\b":
                self.col = max(0, self.col - 1)
            elif char >= " ":
                row = self.rows[self.row]
                row.extend(" " * (self.col + 1 - len(row)))
                row[self.col] = char
                self.col += 1
            index += 1

    def _down(self, count: int) -> None:
        self.row += count
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return  # mode switches: cursor visibility, bracketed paste, autowrap
        count = int(params.split(";")[0] or 1) if params else 1
        row = self.rows[self.row]
        if final == "A":
            self.row = max(0, self.row - count)
        elif final == "B":
            self._down(count)
        elif final == "C":
            self.col += count
        elif final == "D":
            self.col = max(0, self.col - count)
        elif final == "G":
            self.col = count - 1
        elif final == "K":
            if params in ("", "0"):
                del row[self.col :]
            elif params == "2":
                row.clear()
        elif final == "J":
            if params in ("", "0"):
                del row[self.col :]
                del self.rows[self.row + 1 :]
            elif params == "2":
                self.rows = [[] for _ in self.rows]


class Session:
    """``python -m tinytcp.client`` on a 24x120 pseudo-terminal, with its screen."""

    def __init__(self, *args: str) -> None:
        # PROMPT_TOOLKIT_NO_CPR: pexpect does not answer cursor-position queries
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        self.child = pexpect.spawn(
            sys.executable, ["-m", "tinytcp.client", *args], env=env, dimensions=(24, 120), timeout=WAIT
        )
        self.screen = Screen()
        self.ended = False

    def pump(self, wait: float) -> None:
        """Feed whatever the client printed within ``wait`` seconds to the screen."""
        if self.ended:
            return
        try:
            self.screen.feed(self.child.read_nonblocking(65536, timeout=wait))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self.ended = True

    def wait_for(self, condition: Callable[[Screen], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition(self.screen):
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"{what} never showed; screen:\n" + "\n".join(self.screen.lines))
            self.pump(0.1)

    def wait_for_line(self, line: str, count: int = 1) -> None:
        self.wait_for(lambda screen: screen.lines.count(line) >= count, repr(line))

    def wait_for_prompt(self, typed: str = "") -> None:
        self.wait_for(lambda screen: screen.cursor_line == f"tinytcp> {typed}".rstrip(), f"prompt {typed!r}")

    def type(self, text: str) -> None:
        self.child.send(text)

    def exit_status(self) -> int | None:
        """Wait for the client to end; its exit status."""
        deadline = time.monotonic() + WAIT
        while not self.ended:
            if time.monotonic() > deadline:
                raise AssertionError("the client did not end; screen:\n" + "\n".join(self.screen.lines))
            self.pump(0.2)
        self.child.close()
        return self.child.exitstatus

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


class InteractiveTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        if pexpect is None:
            raise unittest.SkipTest("pexpect is not installed")
        self.server = RunningServer()
        self.addCleanup(self.server.stop)

    def start(self, *args: str, mode: str = "text") -> Session:
        flags = ["--binary"] if mode == "binary" else []
        session = Session("--port", str(self.server.ports[mode]), *flags, *args)
        self.addCleanup(session.kill)
        session.wait_for_prompt()
        return session

    def test_commands_replies_and_ctrl_d(self) -> None:
        session = self.start()
        self.assertTrue(session.screen.lines[0].startswith("Connected to 127.0.0.1:"), session.screen.lines)
        self.assertIn("tinytcp 0.1 ready; type HELP", session.screen.lines[0])
        session.type("ECHO hi\r")
        session.wait_for_line("ECHO hi")
        session.wait_for_prompt()
        session.type("\r")  # empty input: nothing sent, a fresh prompt
        session.type("rev abc\r")
        session.wait_for_line("REVERSE cba")
        session.wait_for_prompt()
        session.child.sendcontrol("d")
        self.assertEqual(session.exit_status(), 0)
        lines = [line for line in session.screen.lines if line]
        self.assertEqual(
            lines[1:],
            ["tinytcp> ECHO hi", "ECHO hi", "tinytcp>", "tinytcp> rev abc", "REVERSE cba", "tinytcp>", "BYE"],
        )
        self.server.wait_for_log(r"closing: client said QUIT")

    def test_history_and_ctrl_c(self) -> None:
        session = self.start()
        session.type("ECHO first\r")
        session.wait_for_line("ECHO first")
        session.wait_for_prompt()
        session.type("\x1b[A")  # up arrow recalls the previous line
        session.wait_for_prompt("ECHO first")
        session.type("\r")
        session.wait_for_line("ECHO first", count=2)
        session.wait_for_prompt()
        session.child.sendcontrol("c")
        self.assertEqual(session.exit_status(), 0)
        self.assertIn("BYE", session.screen.lines)
        self.assertFalse(any("Traceback" in line for line in session.screen.lines))
        self.server.wait_for_log(r"closing: client said QUIT")

    def test_message_while_typing_keeps_the_line(self) -> None:
        session = self.start()
        session.type("ECHO part")
        session.wait_for_prompt("ECHO part")
        self.server.stop()  # the server says BYE to every client, unasked
        status = session.exit_status()
        lines = [line for line in session.screen.lines if line]
        where = f"127.0.0.1:{self.server.text_port}"
        self.assertEqual(
            lines[1:], ["BYE", "tinytcp> ECHO part", f"tinytcp-client: the server at {where} closed the connection"]
        )
        self.assertEqual(status, 0)

    def test_chat_message_while_typing(self) -> None:
        session = self.start()
        session.type("NICK ann\r")
        session.wait_for_line("NICK ann")
        session.wait_for_prompt()
        session.type("SAY hel")
        session.wait_for_prompt("SAY hel")
        bob = subprocess.run(
            [sys.executable, "-m", "tinytcp.client", "--binary", "--port", str(self.server.binary_port)]
            + ["NICK bob", "SAY hi ann", "QUIT"],
            capture_output=True,
            timeout=WAIT,
        )
        self.assertEqual(bob.returncode, 0, bob)
        session.wait_for_line("MSG * bob left")
        session.wait_for_prompt("SAY hel")
        lines = [line for line in session.screen.lines if line]
        self.assertEqual(lines[-4:], ["MSG * bob joined", "MSG bob hi ann", "MSG * bob left", "tinytcp> SAY hel"])
        session.type("lo\r")
        session.wait_for_line("SAID 0")
        self.assertIn("tinytcp> SAY hello", session.screen.lines)
        session.wait_for_prompt()
        session.child.sendcontrol("d")
        self.assertEqual(session.exit_status(), 0)

    def test_binary_mode_and_quit(self) -> None:
        session = self.start(mode="binary")
        self.assertIn("(binary mode)", session.screen.lines[0])
        session.type("echo hi\r")
        session.wait_for_line("ECHO hi")
        session.type("FOO\r")
        session.wait_for_line("tinytcp-client: unknown command 'FOO' (no binary code)")
        session.type("help time\r")
        session.wait_for_line("HELP TIME: the server's local time, ISO 8601 with its UTC offset")
        session.wait_for_prompt()
        session.type("QUIT\r")
        self.assertEqual(session.exit_status(), 1)  # FOO counts as an error
        lines = [line for line in session.screen.lines if line]
        self.assertEqual(lines[-2:], ["tinytcp> QUIT", "BYE"])

    def test_transcript(self) -> None:
        session = self.start("--transcript")
        session.type("TIME\r")
        session.wait_for(lambda screen: any(line.startswith("<- TIME ") for line in screen.lines), "TIME reply")
        self.assertIn("-> TIME", session.screen.lines)
        self.assertIn("<~ WELCOME tinytcp 0.1 ready; type HELP", session.screen.lines)
        session.wait_for_prompt()
        session.child.sendcontrol("d")
        self.assertEqual(session.exit_status(), 0)
        self.assertIn("<- BYE", session.screen.lines)
