"""Run the real ``twistd tinytcp`` on free loopback ports for end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

LISTENING = re.compile(r"(text|binary|web) mode listening on (?:tcp|ssl):(?:127\.\d+\.\d+\.\d+|0\.0\.0\.0):(\d+)")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def twistd_path() -> str:
    """The twistd of the Python running the tests (the one tinytcp is installed in)."""
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(beside):
        return beside
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd not found: install tinytcp (pip install .) first")
    return found


class RunningServer:
    """``twistd -n tinytcp`` listening on ephemeral loopback ports; stop() it when done."""

    def __init__(
        self,
        *args: str,
        binary: bool = True,
        timeout: float = 30.0,
        twistd_args: tuple[str, ...] = (),
        port: str = "0",
        binary_port: str = "0",
    ) -> None:
        self.workdir = tempfile.mkdtemp(prefix="tinytcp-e2e-")
        # bare numbers: loopback only, with tinytcp's accept backlog; 0 picks a free port
        command = [twistd_path(), "-n", "--pidfile=", "--logfile=-", *twistd_args, "tinytcp", "--port", port]
        command += ["--binary-port", binary_port if binary else "none"]
        command += list(args)
        self.process = subprocess.Popen(
            command, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ports: dict[str, int] = {}
        self.listening: list[tuple[str, int]] = []
        wanted = {"text", "binary"} if binary else {"text"}
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= set(self.ports):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("tinytcp did not start:\n" + self.log)
                self._changed.wait(0.1)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            with self._changed:
                self.lines.append(line)
                match = LISTENING.search(line)
                if match:
                    self.ports.setdefault(match.group(1), int(match.group(2)))
                    self.listening.append((match.group(1), int(match.group(2))))
                self._changed.notify_all()

    @property
    def text_port(self) -> int:
        return self.ports["text"]

    @property
    def binary_port(self) -> int:
        return self.ports["binary"]

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until a log line matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                if time.monotonic() > deadline:
                    raise AssertionError(f"no log line matches {pattern!r}:\n" + "".join(self.lines))
                self._changed.wait(0.1)

    def ports_of(self, mode: str, count: int, timeout: float = 10.0) -> list[int]:
        """Wait until ``count`` ports of ``mode`` are listening and return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                ports = [port for m, port in self.listening if m == mode]
                if len(ports) >= count:
                    return ports
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(ports)} {mode} ports listening, not {count}:\n" + "".join(self.lines))
                self._changed.wait(0.1)

    def connect(self, mode: str = "text", timeout: float = 10.0) -> socket.socket:
        """A raw socket to the server, with a timeout on every call."""
        sock = socket.create_connection(("127.0.0.1", self.ports[mode]), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` and wait for the process to end; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode


def start_twistd(
    *args: str, daemon: bool = False, workdir: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``twistd [-n] tinytcp ARGS`` to completion in ``workdir``: for start-up failures, and
    for daemons, whose twistd returns once the daemon has reported its start."""
    mode = ["--pidfile=twistd.pid", "--logfile=twistd.log"] if daemon else ["-n", "--pidfile="]
    return subprocess.run(
        [twistd_path(), *mode, "tinytcp", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    """Read exactly ``count`` CRLF-terminated lines (without CRLF) from a blocking socket."""
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    lines = data.split(b"\r\n")
    assert len(lines) == count + 1 and lines[-1] == b"", f"more than {count} lines: {data!r}"
    return lines[:-1]


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
