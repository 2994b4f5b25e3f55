"""Socket activation: the real ``twistd tinytcp`` under ``systemd-socket-activate``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.support import free_port, read_lines, read_until_closed, twistd_path
from tinytcp.ops.systemd import name_unnamed_sockets
from tinytcp.protocol.wire import encode_frame


def connect(port: int, timeout: float = 20.0) -> socket.socket:
    """Connect to a socket systemd-socket-activate holds (it starts twistd on this connection)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        sock.settimeout(timeout)
        return sock


def stop(process: subprocess.Popen[bytes]) -> None:
    """Cleanup: end the server this test started, should the test fail before it does."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


class SocketActivationTests(SynchronousTestCase):
    def activate(self, fdname: str | None, text: str, binary: str) -> None:
        activate = shutil.which("systemd-socket-activate")
        self.assertIsNotNone(activate, "systemd-socket-activate is missing: apt-get install systemd (see .ci/run)")
        assert activate is not None
        workdir = tempfile.mkdtemp(prefix="tinytcp-systemd-")
        self.addCleanup(shutil.rmtree, workdir, True)
        text_port, binary_port = free_port(), free_port()
        command = [activate, "-l", f"127.0.0.1:{text_port}", "-l", f"127.0.0.1:{binary_port}"]
        if fdname is not None:
            command.append(f"--fdname={fdname}")
        command += [
            twistd_path(),
            "-n",
            "--pidfile=",
            "--logfile=-",
            "tinytcp",
            "--port",
            text,
            "--binary-port",
            binary,
        ]
        log_path = os.path.join(workdir, "out.log")
        with open(log_path, "wb") as out:
            process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(stop, process)
        with connect(text_port) as text_client:
            self.assertEqual(read_lines(text_client, 1), [b"WELCOME tinytcp 0.1 ready; type HELP"])
            with connect(binary_port) as binary_client:
                binary_client.sendall(encode_frame(1, b"activated"))
                self.assertEqual(binary_client.recv(100), encode_frame(1, b"activated"))
                process.send_signal(signal.SIGTERM)
                self.assertEqual(read_until_closed(binary_client), b"\x03\x00\x00\x00\x03BYE")
            self.assertEqual(read_until_closed(text_client), b"BYE\r\n")
        process.wait(30)
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertIn(f"text mode listening on tcp:127.0.0.1:{text_port}", log)
        self.assertIn(f"binary mode listening on tcp:127.0.0.1:{binary_port}", log)
        self.assertNotIn("Traceback", log)

    def test_named_sockets_as_a_socket_unit_passes_them(self) -> None:
        self.activate("text:binary", "systemd:domain=INET:name=text", "systemd:domain=INET:name=binary")

    def test_unnamed_sockets_by_index(self) -> None:
        self.activate(None, "systemd:domain=INET:index=0", "systemd:domain=INET:index=1")


class NameUnnamedSocketsTests(SynchronousTestCase):
    def test_names_them_unknown_as_libsystemd_does(self) -> None:
        environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
        name_unnamed_sockets(environ)
        self.assertEqual(environ["LISTEN_FDNAMES"], "unknown:unknown")

    def test_leaves_named_foreign_and_absent_sockets_alone(self) -> None:
        for environ in (
            {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "text"},
            {"LISTEN_PID": "1", "LISTEN_FDS": "1"},
            {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"},
            {},
        ):
            before = dict(environ)
            name_unnamed_sockets(environ)
            self.assertEqual(environ, before)
