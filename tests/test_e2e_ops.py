"""The real ``twistd tinytcp`` as an operator runs it: start-up failures, daemon mode, logs, version."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.support import RunningServer, read_lines, start_twistd


class StartFailureTests(SynchronousTestCase):
    """Every failure to start: one line on stderr, exit status 1, within a second, in both modes."""

    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="tinytcp-ops-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def check_fails(self, args: list[str], expected: str) -> None:
        for daemon in (False, True):
            started = time.monotonic()
            done = start_twistd(*args, daemon=daemon, workdir=self.workdir)
            elapsed = time.monotonic() - started
            where = "daemon" if daemon else "foreground"
            self.assertEqual(done.returncode, 1, f"{where}: {done.stderr}")
            lines = done.stderr.splitlines()
            self.assertEqual(len(lines), 1, f"{where}: {done.stderr!r}")
            self.assertTrue(lines[0].startswith("twistd tinytcp: "), lines[0])
            self.assertIn(expected, lines[0])
            self.assertEqual(done.stdout, "")
            # the interpreter and Twisted's plugin scan take most of it
            self.assertLess(elapsed, 5.0, where)
            self.assertFalse(os.path.exists(os.path.join(self.workdir, "twistd.pid")), where)

    def test_a_port_in_use(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.check_fails(
                ["--port", str(port), "--binary-port", "none"],
                f"--port {port}: cannot listen for text clients on tcp:{port}:interface=127.0.0.1:backlog=1024: "
                "address already in use",
            )

    def test_a_binary_port_in_use_after_a_text_port_that_was_free(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.check_fails(["--port", "0", "--binary-port", str(port)], f"--binary-port {port}: cannot listen")

    def test_bad_values(self) -> None:
        self.check_fails(["--idle-timeout", "nan"], "--idle-timeout: 'nan' is not a number of seconds")
        self.check_fails(["--max-line", "-1"], "--max-line: '-1' is not a whole number")
        self.check_fails(["--port", "tcp:0:bogus=1"], "--port 'tcp:0:bogus=1': tcp endpoints have no parameter")

    def test_a_unix_socket_in_a_missing_folder(self) -> None:
        self.check_fails(
            ["--port", "unix:/nonexistent/tinytcp.sock"],
            "--port unix:/nonexistent/tinytcp.sock: cannot listen for text clients on "
            "unix:/nonexistent/tinytcp.sock:mode=660: "
            "no such file or directory: /nonexistent/tinytcp.sock.lock",
        )

    def test_tls_without_a_key(self) -> None:
        self.check_fails(["--port", "ssl:0"], "--port 'ssl:0': ssl: needs privateKey=FILE")


class DaemonTests(SynchronousTestCase):
    def test_a_daemon_serves_logs_to_its_file_rotates_on_sigusr1_and_stops_on_sigterm(self) -> None:
        workdir = tempfile.mkdtemp(prefix="tinytcp-ops-")
        self.addCleanup(shutil.rmtree, workdir, True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        done = start_twistd("--port", str(port), "--binary-port", "none", daemon=True, workdir=workdir)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "", ""))
        pidfile = os.path.join(workdir, "twistd.pid")
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_kill, pid)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(b"ECHO from a daemon\nQUIT\n")
            self.assertEqual(read_lines(sock, 3)[1:], [b"ECHO from a daemon", b"BYE"])
        # twistd's own rotation: SIGUSR1 moves twistd.log to twistd.log.1 and starts a new one
        os.kill(pid, signal.SIGUSR1)
        rotated = os.path.join(workdir, "twistd.log.1")
        deadline = time.monotonic() + 10
        while not os.path.exists(rotated) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(rotated) as f:
            self.assertIn(f"text mode listening on tcp:127.0.0.1:{port}", f.read())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(pidfile))
        with open(os.path.join(workdir, "twistd.log")) as f:
            log = f.read()
        self.assertIn("Server Shut Down.", log)


def _kill(pid: int) -> None:
    """Cleanup for a daemon this test started, should the test fail before it stops it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LogTests(SynchronousTestCase):
    def test_no_twisted_port_lines_beside_tinytcps_own(self) -> None:
        server = RunningServer("--port", "tcp6:0:interface=\\:\\:1")
        self.addCleanup(server.stop)
        server.wait_for_log(r"text mode listening on tcp:\[::1\]:\d+")
        server.stop()
        self.assertNotIn("starting on", server.log)
        self.assertNotIn("Port", server.log.replace("Server Shut Down", ""))

    def test_json_logs_one_object_a_line(self) -> None:
        server = RunningServer("--log-format", "json")
        self.addCleanup(server.stop)
        with server.connect() as sock:
            read_lines(sock, 1)
        server.wait_for_log(r"connected \(text\)")
        server.stop()
        events = [json.loads(line) for line in server.lines]
        texts = [event["text"] for event in events]
        self.assertIn(f"text mode listening on tcp:127.0.0.1:{server.text_port}", texts)
        self.assertTrue(any(event.get("log_namespace") == "tinytcp" for event in events))


class VersionTests(SynchronousTestCase):
    def test_server_version(self) -> None:
        import twisted
        from tinytcp import __version__

        version = f"tinytcp {__version__} (Twisted {twisted.__version__})\n"
        workdir = tempfile.mkdtemp(prefix="tinytcp-ops-")
        self.addCleanup(shutil.rmtree, workdir, True)
        done = start_twistd("--version", workdir=workdir)
        self.assertEqual((done.returncode, done.stdout), (0, version))
