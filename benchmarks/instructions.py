"""Instructions per request of the protocol code alone, counted by valgrind: a figure that
does not move when other programs share the machine.

    python benchmarks/instructions.py                       # REVERSE, ECHO and mixed, both formats
    python benchmarks/instructions.py --command reverse --per-read 1

For each case it runs ``--feed`` in this file under ``valgrind --tool=callgrind`` twice, with
N and 2N reads of the same requests fed to the protocol (micro.py's setup: a StringTransport
whose write is a list append, no sockets, no reactor), and prints the difference divided by
the requests of N reads, which cancels the start-up.  ``--server reference`` counts the
asyncio reference server's protocols the same way.  Each case takes about 30 s.

The runs use ``PYTHONHASHSEED=0`` unless the environment sets it: with a random seed, dict
lookups collide differently from run to run and the figure moves by a hundred or two.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COMMANDS = {"echo": (1, b"ECHO "), "reverse": (2, b"REVERSE ")}


def requests(mode: str, command: str, count: int) -> bytes:
    """One read of ``count`` requests with 32-byte ASCII payloads (``mixed``: loadgen.py's
    rotation of ECHO, REVERSE, HELP, HELP ECHO and an unknown command)."""
    if command == "mixed":
        sys.path.insert(0, HERE)
        import loadgen

        kinds = loadgen.MIXED
        learned = {"help": b"", "help_echo": b""}  # the replies are not checked here
        pairs = (
            loadgen.request_pair(kinds[i % len(kinds)], (f"{i:x}-".encode() + b"x" * 32)[:32], mode == "text", learned)
            for i in range(count)
        )
        return b"".join(request for request, _ in pairs)
    code, word = COMMANDS[command]
    out = []
    for i in range(count):
        payload = (f"{i:x}-".encode() + b"x" * 32)[:32]
        out.append(struct.pack(">BI", code, len(payload)) + payload if mode == "binary" else word + payload + b"\n")
    return b"".join(out)


def feed(server: str, mode: str, command: str, per_read: int, reads: int) -> None:
    """Feed ``reads`` reads to one protocol (the process valgrind counts)."""
    sys.path.insert(0, HERE)
    import micro

    make = micro.reference_protocol if server == "reference" else micro.tinytcp_protocol
    protocol, transport = make(mode)
    receive = getattr(protocol, "dataReceived", None) or protocol.data_received
    chunk = requests(mode, command, per_read)
    receive(chunk)
    if not transport.value():
        raise SystemExit("no reply")
    transport.clear()
    for _ in range(reads):
        receive(chunk)
        transport.clear()


def count(server: str, mode: str, command: str, per_read: int, reads: int) -> int:
    """Instructions of one run of ``feed`` under callgrind."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--feed",
            server,
            mode,
            command,
            str(per_read),
            str(reads),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "0", **os.environ},
    )
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"valgrind said no count:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("tinytcp", "reference"), nargs="*", default=["tinytcp", "reference"])
    parser.add_argument("--mode", choices=("binary", "text"), nargs="*", default=["binary", "text"])
    parser.add_argument("--command", choices=(*COMMANDS, "mixed"), nargs="*", default=["reverse", "echo", "mixed"])
    parser.add_argument("--per-read", type=int, nargs="*", default=[256])
    parser.add_argument("--feed", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        server, mode, command, per_read, reads = args.feed
        feed(server, mode, command, int(per_read), int(reads))
        return 0
    print(f"{'server':10} {'mode':7} {'command':8} {'per read':>8} {'instructions/request':>21}")
    for command in args.command:
        for mode in args.mode:
            for per_read in args.per_read:
                reads = max(20, 5120 // per_read)
                for server in args.server:
                    small = count(server, mode, command, per_read, reads)
                    large = count(server, mode, command, per_read, 2 * reads)
                    each = (large - small) / (reads * per_read)
                    print(f"{server:10} {mode:7} {command:8} {per_read:8} {each:21,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
