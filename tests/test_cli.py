"""``tinytcp-client`` in scripted mode, run as a subprocess against a real server."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr

from twisted.trial import unittest

from tests.support import RunningServer, free_port
from tinytcp.client import cli

TIME_LINE = re.compile(r"^TIME \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
BANNER = "tinytcp 0.1 ready; type HELP"


def client_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinytcp.client", *args]


def run_client(*args: str, stdin: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the client to its end; output decoded as UTF-8 (escapes are the client's job)."""
    result = subprocess.run(
        client_command(*args),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    )


class ScriptedTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.server = RunningServer()
        self.addCleanup(self.server.stop)

    def port(self, mode: str) -> str:
        return str(self.server.ports[mode])

    def assertClean(self, result: subprocess.CompletedProcess[str], status: int = 0) -> list[str]:
        """The exit status is ``status``, stderr is empty; returns the stdout lines."""
        self.assertEqual((result.returncode, result.stderr), (status, ""), result)
        return result.stdout.splitlines()

    def test_arguments_text(self) -> None:
        result = run_client("--port", self.port("text"), "TIME", "ECHO Hello from client", "QUIT")
        lines = self.assertClean(result)
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0], TIME_LINE)
        self.assertEqual(lines[1:], ["ECHO Hello from client", "BYE"])

    def test_arguments_binary(self) -> None:
        result = run_client(
            "--binary",
            "--port",
            self.port("binary"),
            "TIME",
            "ECHO Hello from client",
            "rev héllo",
            "help echo",
            "quit",
        )
        lines = self.assertClean(result)
        self.assertRegex(lines[0], TIME_LINE)
        self.assertEqual(
            lines[1:],
            ["ECHO Hello from client", "REVERSE olléh", "HELP ECHO <text>: send the text back unchanged", "BYE"],
        )

    def test_binary_client_on_the_text_port_fails_cleanly(self) -> None:
        result = run_client("--binary", "--port", self.port("text"), "--timeout", "5", "TIME")
        self.assertEqual(result.returncode, 2)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)

    def test_tls_client_on_a_plain_port_fails_cleanly(self) -> None:
        """The server's WELCOME ends the handshake before the client has its connection in hand."""
        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("TLS needs pyOpenSSL") from None
        result = run_client("--tls", "--port", self.port("text"), "--timeout", "5", "TIME")
        self.assertEqual((result.returncode, result.stdout), (2, ""), result)
        self.assertEqual(
            result.stderr,
            f"tinytcp-client: cannot connect to 127.0.0.1:{self.port('text')}: "
            "TLS: the server did not answer in TLS (is the port a plain TCP listener?)\n",
        )

    def test_error_reply_exits_1(self) -> None:
        result = run_client("--port", self.port("text"), "FOO", "ECHO still here")
        self.assertEqual(self.assertClean(result, 1), ["ERROR UNKNOWN_COMMAND", "ECHO still here"])

    def test_binary_unknown_command_is_not_sent_and_exits_1(self) -> None:
        result = run_client("--binary", "--port", self.port("binary"), "ECHO a", "FOO bar", "ECHO b")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout.splitlines(), ["ECHO a", "ECHO b"])
        self.assertEqual(result.stderr, "tinytcp-client: unknown command 'FOO' (no binary code)\n")

    def test_script_file(self) -> None:
        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as script:
            script.write(b"ECHO one\r\n\n   \nrev abc\nQUIT\n")
        self.addCleanup(os.unlink, script.name)
        for mode in ("text", "binary"):
            flags = ["--binary"] if mode == "binary" else []
            result = run_client(*flags, "--port", self.port(mode), "--script", script.name)
            self.assertEqual(self.assertClean(result), ["ECHO one", "REVERSE cba", "BYE"], mode)

    def test_stdin_pipe_and_script_dash(self) -> None:
        commands = b"ECHO piped\nTIME\n"
        for args in (["--port", self.port("text")], ["--binary", "--port", self.port("binary"), "--script", "-"]):
            lines = self.assertClean(run_client(*args, stdin=commands))
            self.assertEqual(lines[0], "ECHO piped")
            self.assertRegex(lines[1], TIME_LINE)

    def test_any_payload_bytes_are_printed_escaped(self) -> None:
        result = run_client("--binary", "--port", self.port("binary"), stdin=b"ECHO \xff\xfe ok\n")
        self.assertEqual(self.assertClean(result), ["ECHO \\xff\\xfe ok"])
        result = run_client("--port", self.port("text"), stdin=b"ECHO \xc3(\n")  # (\xff is telnet IAC in text mode)
        self.assertEqual(self.assertClean(result, 1), ["ERROR BAD_ENCODING"])

    def test_transcript_text(self) -> None:
        result = run_client("--transcript", "--port", self.port("text"), "TIME", "ECHO hi", "FOO", "QUIT")
        lines = self.assertClean(result, 1)
        self.assertEqual(lines[:2], [f"<~ WELCOME {BANNER}", "-> TIME"])
        self.assertRegex(lines[2], r"^<- TIME \d{4}-")
        self.assertEqual(
            lines[3:], ["-> ECHO hi", "<- ECHO hi", "-> FOO", "<- ERROR UNKNOWN_COMMAND", "-> QUIT", "<- BYE"]
        )

    def test_transcript_binary(self) -> None:
        result = run_client("--transcript", "--binary", "--port", self.port("binary"), "ECHO hi", "rev abc", "QUIT")
        lines = self.assertClean(result)
        self.assertEqual(lines, ["-> ECHO hi", "<- ECHO hi", "-> rev abc", "<- REVERSE cba", "-> QUIT", "<- BYE"])

    def test_transcript_keeps_request_order_for_refused_lines(self) -> None:
        """A line refused at once is reported after the replies to the lines before it."""
        command = client_command("--transcript", "--binary", "--port", self.port("binary"), "ECHO hi", "FOO", "QUIT")
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stdout.decode().splitlines(),
            [
                "-> ECHO hi",
                "<- ECHO hi",
                "-> FOO",
                "tinytcp-client: unknown command 'FOO' (no binary code)",
                "-> QUIT",
                "<- BYE",
            ],
        )

    def test_commands_after_quit_cannot_be_answered(self) -> None:
        result = run_client("--port", self.port("text"), "QUIT", "TIME")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "BYE\n")
        self.assertEqual(
            result.stderr,
            f"tinytcp-client: connection to 127.0.0.1:{self.port('text')} closed before the reply to 'TIME'\n",
        )

    def test_shutdown_while_waiting_for_input(self) -> None:
        """The server's BYE is printed and the client ends although stdin stays open."""
        process = subprocess.Popen(
            client_command("--port", self.port("text")),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(process.kill)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"ECHO first\n")
        process.stdin.flush()
        self.assertEqual(process.stdout.readline(), b"ECHO first\n")
        self.server.stop()
        out, err = process.communicate(timeout=15)
        self.assertEqual((process.returncode, out, err), (0, b"BYE\n", b""))

    def test_plain_one_shot_run_imports_no_tls_and_no_extras(self) -> None:
        """TLS, endpoint descriptions, the account commands, ``regex`` and the prompt stay unloaded.

        They were most of a one-shot command's start-up (docs/performance.md, client
        start-up); a module-level import of any of them would bring that back unnoticed.
        """
        unwanted = (
            "OpenSSL",
            "cryptography",
            "service_identity",
            "twisted.internet.ssl",
            "twisted.internet.endpoints",
            "twisted.cred",
            "tinytcp.auth.commands",
            "regex",
            "prompt_toolkit",
        )
        script = (
            "import sys\n"
            "from tinytcp.client import cli\n"
            "status = cli.main(sys.argv[1:])\n"
            f"print('loaded:', *sorted(name for name in {unwanted!r} if name in sys.modules))\n"
            "sys.exit(status)\n"
        )
        for flags in ([], ["--binary"]):
            mode = "binary" if flags else "text"
            result = subprocess.run(
                [sys.executable, "-c", script, *flags, "--port", self.port(mode), "TIME", "ECHO hi", "REV abc"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
            lines = result.stdout.decode().splitlines()
            self.assertEqual((result.returncode, result.stderr), (0, b""), result)
            self.assertRegex(lines[0], TIME_LINE)
            self.assertEqual(lines[1:], ["ECHO hi", "REVERSE cba", "loaded:"], mode)

    def test_console_script(self) -> None:
        script = os.path.join(os.path.dirname(sys.executable), "tinytcp-client")
        if not os.path.exists(script):
            raise unittest.SkipTest("tinytcp-client is not installed beside this Python")
        result = subprocess.run(
            [script, "--port", self.port("text"), "ECHO from the script"], capture_output=True, timeout=30
        )
        self.assertEqual((result.returncode, result.stdout), (0, b"ECHO from the script\n"))


class FailureTests(unittest.SynchronousTestCase):
    def assertOneLine(self, result: subprocess.CompletedProcess[str], pattern: str) -> None:
        self.assertEqual(result.returncode, 2, result)
        self.assertEqual(result.stdout, "")
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertRegex(result.stderr, pattern)

    def test_connection_refused(self) -> None:
        port = free_port()
        for flags in ([], ["--binary"]):
            result = run_client(*flags, "--port", str(port), "TIME")
            self.assertOneLine(
                result, rf"^tinytcp-client: cannot connect to 127\.0\.0\.1:{port}: connection refused\n$"
            )

    def listening_socket(self) -> int:
        """A port that accepts connections (the kernel does) but never says anything."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        return sock.getsockname()[1]

    def test_timeout_waiting_for_welcome(self) -> None:
        port = self.listening_socket()
        started = time.monotonic()
        result = run_client("--port", str(port), "--timeout", "1", "TIME")
        self.assertLess(time.monotonic() - started, 10)
        self.assertOneLine(
            result,
            rf"^tinytcp-client: cannot connect to 127\.0\.0\.1:{port}: no answer within 1 s"
            r"; if it is a TLS listener, add --tls\n$",
        )

    def test_timeout_waiting_for_a_reply(self) -> None:
        port = self.listening_socket()
        started = time.monotonic()
        result = run_client("--binary", "--port", str(port), "--timeout", "1", "TIME", "ECHO x")
        self.assertLess(time.monotonic() - started, 10)
        self.assertOneLine(result, rf"^tinytcp-client: no reply to 'TIME' from 127\.0\.0\.1:{port} within 1 s\n$")

    def test_server_busy(self) -> None:
        server = RunningServer("--max-connections", "1", binary=False)
        self.addCleanup(server.stop)
        with server.connect("text") as held:
            self.assertTrue(held.recv(100).startswith(b"WELCOME "))
            result = run_client("--port", str(server.text_port), "TIME")
        self.assertOneLine(
            result,
            rf"^tinytcp-client: cannot connect to 127\.0\.0\.1:{server.text_port}: the server said ERROR BUSY\n$",
        )

    def test_usage_errors(self) -> None:
        result = run_client("--port", "http", "TIME")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertIn("tinytcp-client: error: argument --port: not a port number (1-65535): 'http'", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        for args in (["--port", "70000"], ["--timeout", "0"], ["--script", "x", "TIME"], ["--nope"]):
            stderr = io.StringIO()
            with redirect_stderr(stderr), self.assertRaises(SystemExit) as exit:
                cli.parse_args(args)
            self.assertEqual(exit.exception.code, 2, args)
            self.assertIn("usage: tinytcp-client", stderr.getvalue())

    def test_version(self) -> None:
        from tinytcp import __version__

        result = run_client("--version")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, f"tinytcp-client {__version__}\n", ""))

    def test_default_ports_follow_the_mode(self) -> None:
        self.assertEqual((cli.parse_args([]).host, cli.parse_args([]).port), ("127.0.0.1", 40000))
        self.assertEqual(cli.parse_args(["--binary"]).port, 40001)
        self.assertEqual(cli.parse_args(["--binary", "--port", "5"]).port, 5)
        self.assertEqual(cli.parse_args([]).timeout, 10)

    def test_missing_script(self) -> None:
        result = run_client("--script", "/nonexistent/commands.txt")
        self.assertOneLine(
            result, r"^tinytcp-client: cannot read /nonexistent/commands\.txt: No such file or directory\n$"
        )
