"""Run inside a network namespace of its own (``unshare -n``): a client from another machine.

tinytcp treats loopback peers as local, and tests may send traffic only to addresses of this
machine.  So this script, started by tests/test_e2e_remote.py under ``unshare -n``, brings up
the namespace's own loopback device, gives it the documentation address 192.0.2.1 (it exists
only inside this namespace), starts ``twistd tinytcp`` listening on every address with the
options it is given, and talks to it from 192.0.2.1: the server sees a peer that is not
loopback, as a client on another machine would be.  It prints what each client received, as
JSON, for the test to check.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.support import RunningServer

REMOTE = "192.0.2.1"


def exchange(address: str, port: int, lines: list[bytes]) -> list[str]:
    """Connect from ``address``, send ``lines``, and return every line received until close or quiet."""
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.bind((address, 0))
        sock.connect((address, port))
        if lines:
            sock.sendall(b"".join(line + b"\n" for line in lines))
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if data.count(b"\r\n") >= len(lines) + 1:
                break
    return [line.decode("utf-8", "replace") for line in data.split(b"\r\n") if line]


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{REMOTE}/32", "dev", "lo"], check=True)
    options, lines = sys.argv[1:], [line.encode() for line in sys.stdin.read().splitlines()]
    server = RunningServer(*options, binary=False, port="tcp:0:interface=0.0.0.0")
    try:
        port = server.text_port
        result = {
            "remote": exchange(REMOTE, port, lines),
            "loopback": exchange("127.0.0.1", port, lines),
        }
    finally:
        server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
