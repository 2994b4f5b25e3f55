"""A real ``redis-server`` on a free loopback port, for the tests of the shared chat room."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from tests.support import free_port


def redis_server_path() -> str | None:
    """Debian's redis-server (package redis-server; .ci/run installs it)."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


class RunningRedis:
    """redis-server on 127.0.0.1, no persistence; stop() and start() again on the same port."""

    def __init__(self, port: int | None = None, unix_socket: bool = False, tls: tuple[str, str] | None = None) -> None:
        """``unix_socket``: also listen on ``self.socket_path``; ``tls``: (certificate, key) PEM
        files for a TLS port, ``self.tls_port``, next to the plain one."""
        path = redis_server_path()
        if path is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.path = path
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="tinytcp-redis-")
        self.socket_path = os.path.join(self.workdir, "redis.sock") if unix_socket else None
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) on this port and wait until it answers PING."""
        command = [self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", self.workdir, "--logfile", os.path.join(self.workdir, "redis.log")]
        if self.socket_path:
            command += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        if self.tls:
            certificate, key = self.tls
            command += ["--tls-port", str(self.tls_port), "--tls-cert-file", certificate, "--tls-key-file", key]
            command += ["--tls-auth-clients", "no"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def command(self, *words: str) -> bytes:
        """Send one inline command and return the first line of the reply (no client library)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.split(b"\r\n", 1)[0]

    def stop(self) -> None:
        """Stop this redis-server (the one this object started), waiting for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
