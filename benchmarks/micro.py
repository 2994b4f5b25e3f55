"""Per-request cost of the protocol code alone: no sockets, no reactor, no other process.

    python benchmarks/micro.py

Feeds tinytcp's ``BinaryProtocol`` / ``TextProtocol`` (on a Twisted ``StringTransport`` whose
``write`` is a plain list append, as the reference's fake transport's is) and
the reference server's asyncio protocols (on a fake transport) the same bytes: reads of 256
pipelined 32-byte ECHO requests, and reads of a single request, and prints the best of
``--repeats`` timings in microseconds per request.  It leaves out what the kernel and the
event loop cost, which ``run.py`` measures, and in exchange barely moves when other programs
share the machine, so it is the number to watch while optimising the hot path.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def requests(mode: str, count: int, size: int = 32) -> tuple[bytes, bytes]:
    """(one read of ``count`` requests, the replies it must produce)."""
    reqs, reps = [], []
    for i in range(count):
        payload = (f"{i:x}-".encode() + b"x" * size)[:size]
        if mode == "binary":
            frame = struct.pack(">BI", 1, len(payload)) + payload
            reqs.append(frame)
            reps.append(frame)
        else:
            reqs.append(b"ECHO " + payload + b"\n")
            reps.append(b"ECHO " + payload + b"\r\n")
    return b"".join(reqs), b"".join(reps)


class FakeAsyncioTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.write = self.out.append

    def close(self) -> None:
        pass

    def value(self) -> bytes:
        return b"".join(self.out)

    def clear(self) -> None:
        self.out.clear()


def tinytcp_protocol(mode: str):
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from tinytcp.server.binary import BinaryProtocol
    from tinytcp.server.state import Server, Settings
    from tinytcp.server.text import TextProtocol

    server = Server(Settings(), reactor=MemoryReactorClock())  # type: ignore[arg-type]
    protocol = (BinaryProtocol if mode == "binary" else TextProtocol)(server)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
    protocol.makeConnection(transport)
    # writes cost what they cost the reference here: a C-level list append, not StringTransport's checks
    out: list[bytes] = []
    transport.write = out.append  # type: ignore[method-assign]
    transport.writeSequence = out.extend  # type: ignore[method-assign]
    transport.value = lambda: b"".join(out)  # type: ignore[method-assign]
    transport.clear = out.clear  # type: ignore[method-assign]
    return protocol, transport


def reference_protocol(mode: str):
    import reference_server

    protocol = (reference_server.BinaryProtocol if mode == "binary" else reference_server.TextProtocol)()
    transport = FakeAsyncioTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    transport.clear()
    return protocol, transport


def measure(make, mode: str, per_read: int, total: int, repeats: int) -> float:
    """Best-of-``repeats`` microseconds per request."""
    protocol, transport = make(mode)
    chunk, expected = requests(mode, per_read)
    feed = getattr(protocol, "dataReceived", None) or protocol.data_received
    feed(chunk)
    if transport.value() != expected:
        raise SystemExit(f"{make.__name__} {mode}: wrong replies {transport.value()[:80]!r}")
    transport.clear()
    reads = max(1, total // per_read)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reads):
            feed(chunk)
            transport.clear()
        best = min(best, time.perf_counter() - t0)
    return best / (reads * per_read) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000, help="requests per timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'case':34} {'tinytcp us/req':>15} {'reference us/req':>17} {'ratio':>7}")
    for mode in ("binary", "text"):
        for per_read in (256, 1):
            total = args.requests if per_read > 1 else args.requests // 4
            tiny = measure(tinytcp_protocol, mode, per_read, total, args.repeats)
            ref = measure(reference_protocol, mode, per_read, total, args.repeats)
            case = f"{mode} ECHO 32 B, {per_read} per read"
            print(f"{case:34} {tiny:15.3f} {ref:17.3f} {tiny / ref:6.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
