"""CPU per MiB of text-mode input: plain ECHO lines against lines full of telnet IAC sequences.

    python benchmarks/telnet_cost.py [--mib 4] [--repeats 5]

Feeds ``TextProtocol`` (on a Twisted ``StringTransport``, server on a fake clock, as the
protocol tests build it) 64 KiB reads of each kind of line and prints the best of
``--repeats`` CPU timings in milliseconds per MiB of input, and each one's ratio to plain
ECHO.  Telnet stripping must not make a client's bytes much dearer than plain text
(issue 12: at most 3x), or a few telnet-heavy clients steal everyone else's reactor time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import connect, make_server  # noqa: E402
from tinytcp.server.text import TextProtocol  # noqa: E402

MIB = 1 << 20
READ = 65536

#: one line of each kind; every IAC-heavy one strips down to an ECHO line
LINES = {
    "plain ECHO": b"ECHO the quick brown fox jumps over the lazy dog 0123456789\r\n",
    "IAC WILL/DO after every byte": b"ECHO "
    + b"".join(bytes([c]) + b"\xff\xfb\x01\xff\xfd\x03" for c in b"the quick brown fox")
    + b"\r\n",
    "2-byte commands (IAC NOP/IP)": b"ECHO x" + b"\xff\xf1\xff\xf4" * 40 + b"y\r\n",
    "IAC NOP after every byte": b"ECHO " + b"".join(bytes([c]) + b"\xff\xf1" for c in b"the quick brown fox") + b"\r\n",
    "subnegotiations": b"ECHO a" + b"\xff\xfa\x18\x00xterm-256color\xff\xf0b" * 8 + b"\r\n",
    "escaped IAC IAC": b"ECHO z" + b"\xff\xff" * 60 + b"z\r\n",
    "DO TIMING-MARK": b"ECHO t" + b"\xff\xfd\x06" * 30 + b"t\r\n",
}


def cpu_ms_per_mib(line: bytes, mib: int) -> float:
    """CPU time to feed ``mib`` MiB of ``line`` repeated, in 64 KiB reads, in ms per MiB."""
    stream = line * (mib * MIB // len(line))
    reads = [stream[i : i + READ] for i in range(0, len(stream), READ)]
    protocol, transport = connect(TextProtocol, make_server())
    transport.clear()
    start = time.process_time()
    for read in reads:
        protocol.dataReceived(read)
        transport.clear()
    elapsed = time.process_time() - start
    if protocol.closing:
        raise SystemExit(f"the server closed the connection on {line!r}")
    return elapsed * 1000 * MIB / len(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=4, help="MiB of input per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per kind; the best is printed")
    args = parser.parse_args()
    base = None
    print(f"{'input':32} {'CPU ms/MiB':>10} {'x plain':>8}")
    for name, line in LINES.items():
        best = min(cpu_ms_per_mib(line, args.mib) for _ in range(args.repeats))
        base = base or best
        print(f"{name:32} {best:10.2f} {best / base:7.2f}x")


if __name__ == "__main__":
    main()
