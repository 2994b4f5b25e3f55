"""Per-request cost of the protocol code alone: no sockets, no reactor, no other process.

    python benchmarks/micro.py                    # ECHO, REVERSE and mixed
    python benchmarks/micro.py --command echo     # one of them

Feeds tinytcp's ``BinaryProtocol`` / ``TextProtocol`` (on a Twisted ``StringTransport`` whose
``write`` is a plain list append, as the reference's fake transport's is) and
the reference server's asyncio protocols (on a fake transport) the same bytes: reads of 256
pipelined requests with 32-byte payloads, and reads of a single request, and prints the best
of ``--repeats`` timings in microseconds per request.  The requests are those of
``loadgen.py --command``: ECHO, REVERSE, or the mixed rotation (ECHO, REVERSE, HELP, HELP
ECHO, an unknown command; the HELP replies learned from each protocol first), and every
reply is checked once before the timings.  It leaves out what the kernel and the
event loop cost, which ``run.py`` measures, and in exchange barely moves when other programs
share the machine, so it is the number to watch while optimising the hot path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402


def feeder(protocol: object) -> Callable[[bytes], None]:
    """The protocol's read hook: Twisted's dataReceived or asyncio's data_received."""
    return getattr(protocol, "dataReceived", None) or protocol.data_received  # type: ignore[attr-defined]


def learn(make: Callable, mode: str) -> dict[str, bytes]:
    """The HELP and HELP ECHO replies of ``make``'s protocol, as loadgen learns a server's."""
    protocol, transport = make(mode)
    transport.clear()
    feed = feeder(protocol)
    learned = {}
    for kind in ("help", "help_echo"):
        feed(loadgen.help_request(kind, mode == "text"))
        learned[kind] = transport.value()
        transport.clear()
    return learned


def reads(mode: str, command: str, per_read: int, learned: dict[str, bytes] | None) -> list[tuple[bytes, bytes]]:
    """(requests, the replies they must produce) of each read: one read, or for mixed as
    many as it takes for every kind of request to be in them."""
    count = -(-len(loadgen.MIXED) // per_read) if command == "mixed" else 1
    stream = loadgen.Stream(per_read * count, 32, mode == "text", 7, command, learned)
    pairs = stream.pairs
    return [
        (b"".join(p[0] for p in pairs[i : i + per_read]), b"".join(p[1] for p in pairs[i : i + per_read]))
        for i in range(0, len(pairs), per_read)
    ]


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


def measure(make: Callable, mode: str, command: str, per_read: int, total: int, repeats: int) -> float:
    """Best-of-``repeats`` microseconds per request."""
    learned = learn(make, mode) if command == "mixed" else None
    pairs = reads(mode, command, per_read, learned)
    protocol, transport = make(mode)
    transport.clear()
    feed = feeder(protocol)
    for chunk, expected in pairs:
        feed(chunk)
        if transport.value() != expected:
            raise SystemExit(f"{make.__name__} {mode} {command}: wrong replies {transport.value()[:80]!r}")
        transport.clear()
    chunks = [chunk for chunk, _ in pairs]
    rounds = max(1, total // (per_read * len(chunks)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(rounds):
            for chunk in chunks:
                feed(chunk)
                transport.clear()
        best = min(best, time.perf_counter() - t0)
    return best / (rounds * len(chunks) * per_read) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000, help="requests per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--command", nargs="+", choices=loadgen.COMMANDS, default=list(loadgen.COMMANDS), help="default: all three"
    )
    args = parser.parse_args()
    print(f"{'case':37} {'tinytcp us/req':>15} {'reference us/req':>17} {'ratio':>7}")
    for command in args.command:
        for mode in ("binary", "text"):
            for per_read in (256, 1):
                total = args.requests if per_read > 1 else args.requests // 4
                tiny = measure(tinytcp_protocol, mode, command, per_read, total, args.repeats)
                ref = measure(reference_protocol, mode, command, per_read, total, args.repeats)
                name = "ECHO" if command == "echo" else "REVERSE" if command == "reverse" else "mixed"
                case = f"{mode} {name} 32 B, {per_read} per read"
                print(f"{case:37} {tiny:15.3f} {ref:17.3f} {tiny / ref:6.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
