"""Load generator for tinytcp-style servers: one scenario per run, JSON result on stdout.

Stdlib only; a single thread on ``select.epoll`` with non-blocking sockets, so that one
process holds 15,000 connections and spends as little as possible per request.  Every
reply is checked byte for byte against the reply the protocol prescribes (an ECHO frame
comes back identical; ``ECHO <p>\\n`` comes back as ``ECHO <p>\\r\\n``), and every phase is
bounded in time (``--timeout`` for the whole run, a stall limit while waiting for replies).

Scenarios (``python benchmarks/loadgen.py SCENARIO --help`` for the options):

- ``pipelined``: 1 connection, ``--window`` requests in flight, topped up after every read.
- ``reqresp``: ``--conns`` connections, one request in flight on each; req/s, p50/p99 latency.
- ``bulk``: 1 connection, ``--window`` large frames in flight (ECHO unless ``--command``); MB/s (10^6 bytes/s of
  echoed payload).
- ``idle``: ``--conns`` connections held; the server's RSS growth per connection (needs
  ``--server-pid``), then one request on each and the time until all are answered.
- ``fanout``: ``--conns`` text clients; one sends ``SAY <token>``, time until every other
  client has a ``MSG`` line carrying the token.  Skips itself (``"skipped"`` in the result)
  when the server answers ``ERROR UNKNOWN_COMMAND`` to SAY.

``--command`` (pipelined, reqresp, bulk) picks what is asked: ``echo`` (the default),
``reverse`` (``REVERSE <p>`` -> ``REVERSE <p reversed>``; binary code 2), or ``mixed``: ECHO,
REVERSE, HELP, HELP ECHO and an unknown command (text ``XYZZY``, binary code 0x42) in turn,
every command whose reply is deterministic.  Payloads of REVERSE and mixed are printable
ASCII in both formats.  The two HELP replies are asked of the server on a setup connection
before the run and used as the expected bytes, so the stream follows the server's command
list; they are sanity-checked and reported as ``learned`` in the result.

Exit status 0 with ``"ok": true``, 1 with ``"ok": false`` and an ``"error"`` on any failure.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import resource
import select
import signal
import socket
import statistics
import string
import struct
import sys
import time
from bisect import bisect_right
from itertools import accumulate

IN = select.EPOLLIN
OUT = select.EPOLLOUT
HEADER = struct.Struct(">BI")
ECHO, REVERSE, HELP, ERROR = 1, 2, 5, 0xFF
#: a binary code and a text word no server should know: the unknown command of the mixed stream
UNKNOWN_CODE, UNKNOWN_WORD = 0x42, b"XYZZY"
UNKNOWN_LINE = b"ERROR UNKNOWN_COMMAND\r\n"
UNKNOWN_FRAME = HEADER.pack(ERROR, 15) + b"UNKNOWN_COMMAND"
TEXT_ALPHABET = (string.ascii_letters + string.digits + "-_.:/+=").encode("ascii")
#: maps any byte to one of TEXT_ALPHABET, so random bytes become a printable payload in one call
TO_ALPHABET = bytes(TEXT_ALPHABET[b % len(TEXT_ALPHABET)] for b in range(256))
#: --command choices; the mixed stream rotates through MIXED, one request of each kind in turn
COMMANDS = ("echo", "reverse", "mixed")
MIXED = ("echo", "reverse", "help", "help_echo", "unknown")
now = time.perf_counter


class Failed(Exception):
    """The scenario cannot go on: wrong bytes, a stall, a closed connection, a deadline."""


class Deadline(Failed):
    pass


# ---------------------------------------------------------------------------------------
# requests and their expected replies


def make_payload(rng: random.Random, index: int, size: int, text: bool) -> bytes:
    """A payload of exactly ``size`` bytes, unique per index; text payloads are printable
    ASCII without blanks, so that the argument comes back exactly as sent (and reversing
    its bytes is reversing its text)."""
    if not text:
        head = index.to_bytes(8, "big")
        return (head + rng.randbytes(max(0, size - 8)))[:size]
    head = f"{index:x}-".encode("ascii")
    if size < len(head):
        return rng.randbytes(size).translate(TO_ALPHABET)
    return head + rng.randbytes(size - len(head)).translate(TO_ALPHABET)


def frame(code: int, payload: bytes) -> bytes:
    """One binary frame, for building requests and expected replies once, before the run."""
    return HEADER.pack(code, len(payload)) + payload


def encode(payload: bytes, text: bool) -> tuple[bytes, bytes]:
    """(request, expected reply) for one ECHO."""
    if text:
        return b"ECHO " + payload + b"\n", b"ECHO " + payload + b"\r\n"
    request = frame(ECHO, payload)
    return request, request


def help_request(kind: str, text: bool) -> bytes:
    """The request for ``help`` (HELP alone) or ``help_echo`` (HELP ECHO)."""
    if kind == "help":
        return b"HELP\n" if text else frame(HELP, b"")
    return b"HELP ECHO\n" if text else frame(HELP, b"ECHO")


def request_pair(kind: str, payload: bytes, text: bool, learned: dict[str, bytes] | None = None) -> tuple[bytes, bytes]:
    """(request, expected reply) for one request of ``kind``, one of MIXED.

    The HELP replies are not written here but ``learned`` from the server at setup (see
    ``learn``), so the stream follows the server's command list as commands are added."""
    if kind == "echo":
        return encode(payload, text)
    if kind == "reverse":
        # payloads are printable ASCII without CR: the reversed text is the reversed bytes
        if text:
            return b"REVERSE " + payload + b"\n", b"REVERSE " + payload[::-1] + b"\r\n"
        return frame(REVERSE, payload), frame(REVERSE, payload[::-1])
    if kind == "unknown":
        if text:
            return UNKNOWN_WORD + b" " + payload + b"\n", UNKNOWN_LINE
        return frame(UNKNOWN_CODE, payload), UNKNOWN_FRAME
    if learned is None:
        raise Failed(f"no learned reply for {kind}")
    return help_request(kind, text), learned[kind]


class Stream:
    """``period`` distinct requests repeated forever, as two doubled buffers, so that any run
    of up to ``period`` consecutive requests (or reply bytes) is one slice.

    Requests and replies may differ in length (the mixed stream): prefix sums of their
    lengths find a run of requests, and a bisection counts the replies a number of reply
    bytes completes.  When every reply has the same length (ECHO, REVERSE) that count is
    one division, as it always was.
    """

    def __init__(
        self,
        period: int,
        size: int,
        text: bool,
        seed: int,
        command: str = "echo",
        learned: dict[str, bytes] | None = None,
    ) -> None:
        rng = random.Random(seed)
        kinds = MIXED if command == "mixed" else (command,)
        # a payload another command than ECHO reads must be text, in binary frames too
        printable = text or command != "echo"
        #: (request, expected reply) of each request of one period
        self.pairs = [
            request_pair(kinds[i % len(kinds)], make_payload(rng, i, size, printable), text, learned)
            for i in range(period)
        ]
        self.period = period
        req_lens = [len(p[0]) for p in self.pairs]
        rep_lens = [len(p[1]) for p in self.pairs]
        #: request i of the doubled request buffer starts at byte req_off[i]
        self.req_off = list(accumulate(req_lens * 2, initial=0))
        #: reply i of one period starts at byte rep_off[i]; rep_off[period] ends the period
        self.rep_off = list(accumulate(rep_lens, initial=0))
        #: the length of every reply when they are all alike, else 0
        self.rep_len = rep_lens[0] if len(set(rep_lens)) == 1 else 0
        requests = b"".join(p[0] for p in self.pairs)
        replies = b"".join(p[1] for p in self.pairs)
        self.requests = memoryview(requests * 2)
        self.replies = replies * 2 if replies != requests else requests * 2
        self.rep_period = len(replies)

    def requests_slice(self, first: int, count: int) -> memoryview:
        """Requests ``first`` to ``first + count`` (count at most ``period``), no copy."""
        i = first % self.period
        return self.requests[self.req_off[i] : self.req_off[i + count]]

    def replies_done(self, received: int) -> int:
        """How many replies the first ``received`` reply bytes complete."""
        if self.rep_len:
            return received // self.rep_len
        whole, rest = divmod(received, self.rep_period)
        return whole * self.period + bisect_right(self.rep_off, rest) - 1

    def check(self, data: bytes | memoryview, offset: int) -> None:
        """``data`` must be the reply bytes at stream offset ``offset``.

        ``startswith`` at an offset is one memcmp, with no copy of either side (a slice of
        ``replies`` would copy it, and comparing memoryviews goes byte by byte).
        """
        start = offset % self.rep_period
        if not self.replies.startswith(data, start):
            expected = self.replies[start : start + len(data)]
            at = next(
                (i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b),
                min(len(data), len(expected)),
            )
            raise Failed(
                f"reply bytes differ at stream offset {offset + at}: "
                f"got {bytes(data[max(0, at - 16) : at + 24])!r}, "
                f"expected {bytes(expected[max(0, at - 16) : at + 24])!r}"
            )


# ---------------------------------------------------------------------------------------
# sockets


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connect(host: str, port: int, text: bool, timeout: float) -> socket.socket:
    """One blocking connect; for text mode, read and check the WELCOME line."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if text:
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise Failed("server closed before WELCOME")
            buf += chunk
            if len(buf) > 4096:
                raise Failed(f"no WELCOME line: {buf[:80]!r}")
        line, _, rest = buf.partition(b"\r\n")
        if not line.startswith(b"WELCOME ") or rest:
            raise Failed(f"bad greeting {buf[:120]!r}")
    sock.setblocking(False)
    return sock


def abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): no TIME_WAIT left behind on the loopback port range."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss(pid: int) -> int:
    """Resident set size in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Failed(f"no VmRSS for pid {pid}")


def listen_overflows() -> int:
    """TcpExt ListenOverflows: SYNs or handshakes dropped because an accept queue was full."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", -1))
    return -1


class Many:
    """Many non-blocking connections opened at a paced rate on one epoll."""

    def __init__(self, host: str, port: int, text: bool, ep: select.epoll) -> None:
        self.addr = (host, port)
        self.text = text
        self.ep = ep
        self.socks: dict[int, socket.socket] = {}
        self.bufs: dict[int, bytes] = {}
        self.order: list[int] = []

    def open(self, count: int, deadline: float, server_pid: int | None, window: int = 64, guard: int = 40) -> dict:
        """Open ``count`` connections: at most ``window`` handshakes (or WELCOMEs) pending, and
        when the server's pid is known, at most ``guard`` connections not yet accepted by it
        (its /proc fd count), so its listen backlog (Twisted: 50) never overflows."""
        ep = self.ep
        base_fds = proc_fds(server_pid) if server_pid else 0
        accepted = 0
        connecting: dict[int, socket.socket] = {}
        greeting: dict[int, bytes] = {}
        started = done = 0
        failures: dict[str, int] = {}
        stop_reason = None
        t0 = now()
        while (stop_reason is None and started < count) or connecting or greeting:
            if now() > deadline:
                raise Deadline(f"opening connections: {done} of {count} after {now() - t0:.1f}s")
            while stop_reason is None and started < count and len(connecting) + len(greeting) < window:
                if server_pid and started - accepted >= guard:
                    accepted = proc_fds(server_pid) - base_fds
                    if started - accepted >= guard:
                        break
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError as e:
                    stop_reason = f"socket(): {e.strerror}"
                    break
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = sock.connect_ex(self.addr)
                if err not in (0, errno.EINPROGRESS):
                    sock.close()
                    stop_reason = f"connect(): {os.strerror(err)}"
                    break
                fd = sock.fileno()
                connecting[fd] = sock
                ep.register(fd, OUT)
                started += 1
            for fd, _ev in ep.poll(0.005):
                sock = connecting.pop(fd, None)
                if sock is not None:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        ep.unregister(fd)
                        sock.close()
                        name = os.strerror(err)
                        failures[name] = failures.get(name, 0) + 1
                        continue
                    ep.modify(fd, IN)
                    if self.text:
                        greeting[fd] = sock
                        self.bufs[fd] = b""
                    else:
                        self.socks[fd] = sock
                        self.bufs[fd] = b""
                        self.order.append(fd)
                        done += 1
                    continue
                sock = greeting.get(fd)
                if sock is not None:
                    try:
                        data = sock.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        data = b""
                        failures[e.strerror or "recv"] = failures.get(e.strerror or "recv", 0) + 1
                    buf = self.bufs[fd] + data
                    if not data or b"\r\n" in buf:
                        del greeting[fd]
                        line, _, rest = buf.partition(b"\r\n")
                        if data and line.startswith(b"WELCOME ") and not rest:
                            self.bufs[fd] = b""
                            self.socks[fd] = sock
                            self.order.append(fd)
                            done += 1
                        else:
                            key = "closed before WELCOME" if not data else f"greeting {buf[:40]!r}"
                            failures[key] = failures.get(key, 0) + 1
                            ep.unregister(fd)
                            sock.close()
                            self.bufs.pop(fd, None)
                    else:
                        self.bufs[fd] = buf
                    continue
                # an established connection spoke while we were still opening others
                self.unexpected(fd, failures)
        return {"opened": done, "failures": failures, "stopped": stop_reason, "open_seconds": now() - t0}

    def unexpected(self, fd: int, failures: dict[str, int]) -> None:
        sock = self.socks.get(fd)
        if sock is None:
            return
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            data = b""
            failures[e.strerror or "recv"] = failures.get(e.strerror or "recv", 0) + 1
        key = f"server sent {data[:40]!r}" if data else "closed by server"
        failures[key] = failures.get(key, 0) + 1
        if not data:
            self.drop(fd)

    def drop(self, fd: int) -> None:
        sock = self.socks.pop(fd, None)
        if sock is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            sock.close()
            self.order.remove(fd)
            self.bufs.pop(fd, None)

    def close_all(self) -> None:
        for fd, sock in list(self.socks.items()):
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            abort(sock)
        self.socks.clear()
        self.order.clear()


# ---------------------------------------------------------------------------------------
# scenarios


def send_some(sock: socket.socket, out: list[memoryview]) -> None:
    """Send what the socket takes from the queue ``out`` (one sendmsg for several buffers)."""
    while out:
        try:
            n = sock.send(out[0]) if len(out) == 1 else sock.sendmsg(out[:64])
        except (BlockingIOError, InterruptedError):
            return
        while n and out:
            head = out[0]
            if n >= len(head):
                n -= len(head)
                out.pop(0)
            else:
                out[0] = head[n:]
                n = 0
        if out and n == 0:
            # partial send: the kernel buffer is full, wait for EPOLLOUT
            return


def read_replies(sock: socket.socket, text: bool, count: int) -> list[bytes]:
    """The next ``count`` whole replies (CRLF lines or frames) on a blocking socket."""
    buf = b""
    replies: list[bytes] = []
    while len(replies) < count:
        if text:
            line, sep, rest = buf.partition(b"\r\n")
            if sep:
                replies.append(line + sep)
                buf = rest
                continue
        elif len(buf) >= HEADER.size:
            end = HEADER.size + HEADER.unpack_from(buf)[1]
            if len(buf) >= end:
                replies.append(buf[:end])
                buf = buf[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise Failed(f"server closed the setup connection after {len(replies)} of {count} replies")
        buf += chunk
        if len(buf) > 1 << 20:
            raise Failed(f"no whole reply in 1 MiB: {buf[:80]!r}")
    if buf:
        raise Failed(f"more bytes than replies on the setup connection: {buf[:80]!r}")
    return replies


def learn(args: argparse.Namespace, text: bool) -> dict[str, bytes]:
    """Ask the server, on a setup connection, for the replies the mixed stream cannot write
    down in advance: HELP (its command list grows as commands are added) and HELP ECHO.

    Checks that they look like HELP replies and that the unknown command really is unknown
    to this server, so that a wrong guess fails here with a clear message, not mid-run.
    """
    sock = connect(args.host, args.port, text, args.stall)
    sock.setblocking(True)
    sock.settimeout(args.stall)
    try:
        kinds = ("help", "help_echo", "unknown")
        probe = make_payload(random.Random(args.seed), 0, 8, True)
        unknown = request_pair("unknown", probe, text)[0]
        sock.sendall(help_request("help", text) + help_request("help_echo", text) + unknown)
        learned = dict(zip(kinds, read_replies(sock, text, len(kinds)), strict=True))
    finally:
        abort(sock)
    help_list, help_echo = learned["help"], learned["help_echo"]
    if text:
        words = help_list[:-2].split(b" ")
        ok = words[0] == b"HELP" and b"ECHO" in words and b"REVERSE" in words
        ok = ok and help_echo.startswith(b"HELP ECHO")
    else:
        words = help_list[HEADER.size :].split(b" ")
        ok = help_list[0] == HELP and b"ECHO" in words and b"REVERSE" in words
        ok = ok and help_echo[0] == HELP and help_echo[HEADER.size :].startswith(b"ECHO")
    if not ok:
        raise Failed(f"HELP and HELP ECHO answered {help_list[:120]!r} and {help_echo[:120]!r}")
    if learned["unknown"] != (UNKNOWN_LINE if text else UNKNOWN_FRAME):
        what = UNKNOWN_WORD.decode() if text else f"code {UNKNOWN_CODE:#x}"
        raise Failed(f"{what} is not an unknown command here: answered {learned['unknown'][:80]!r}")
    return {"help": help_list, "help_echo": help_echo}


def command_stream(args: argparse.Namespace, period: int, text: bool) -> tuple[Stream, dict]:
    """The run's request stream for ``--command``, and what to add to its result."""
    learned = learn(args, text) if args.command == "mixed" else None
    stream = Stream(period, args.size, text, args.seed, args.command, learned)
    info: dict = {"command": args.command}
    if learned:
        info["learned"] = {k: v.decode("latin-1") for k, v in learned.items()}
    return stream, info


def single_stream(args: argparse.Namespace, text: bool, stream: Stream, window: int, recv: int) -> dict:
    """One connection with ``window`` requests of ``stream`` in flight, topped up after every read."""
    period = stream.period
    assert window <= period
    recv = min(recv, stream.rep_period)
    # one receive buffer for the whole run: no allocation (nor, for large reads, page faults) per read
    rbuf = memoryview(bytearray(recv))
    sock = connect(args.host, args.port, text, args.stall)
    fd = sock.fileno()
    ep = select.epoll()
    ep.register(fd, IN)
    out: list[memoryview] = []
    sent = 0  # requests queued
    received = 0  # reply bytes received (all checked)
    rep_len = stream.rep_len  # 0 when replies differ in length: then replies_done counts them
    replies_done = stream.replies_done
    t_start = now()
    t_warm = t_start + args.warmup
    t_end = t_warm + args.duration
    warm_count = None
    end_count = None
    last_progress = t_start
    hard = args.hard_deadline
    writing = False
    reads = 0
    while True:
        completed = received // rep_len if rep_len else replies_done(received)
        t = now()
        if warm_count is None and t >= t_warm:
            warm_count, t_warm, cpu_warm = completed, t, time.process_time()
        if end_count is None and (t >= t_end or (args.max_requests and sent >= args.max_requests)):
            end_count, t_end, cpu_end = completed, t, time.process_time()
        if end_count is None:
            k = window - (sent - completed)
            if k > 0:
                out.append(stream.requests_slice(sent, k))
                sent += k
                send_some(sock, out)
        elif completed >= sent:
            break
        if out and not writing:
            ep.modify(fd, IN | OUT)
            writing = True
        elif writing and not out:
            ep.modify(fd, IN)
            writing = False
        if t - last_progress > args.stall:
            raise Failed(f"no reply for {args.stall}s ({completed} of {sent} answered)")
        if t > hard:
            raise Deadline(f"hard deadline: {completed} of {sent} answered")
        for _fd, ev in ep.poll(0.5):
            if ev & OUT:
                send_some(sock, out)
            if ev & (IN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    n = sock.recv_into(rbuf)
                except (BlockingIOError, InterruptedError):
                    continue
                if not n:
                    raise Failed(f"server closed the connection after {completed} replies")
                stream.check(rbuf[:n], received)
                received += n
                reads += 1
                last_progress = now()
    abort(sock)
    ep.close()
    if warm_count is None or end_count is None:
        raise Failed("run ended before the measurement window")
    measured = end_count - warm_count
    seconds = t_end - t_warm
    completed = replies_done(received)
    return {
        "requests_verified": completed,
        "measured_requests": measured,
        "seconds": seconds,
        "req_per_s": measured / seconds,
        "payload_MB_per_s": measured * args.size / seconds / 1e6,
        "replies_per_read": completed / max(reads, 1),
        "loadgen_cpu_busy": (cpu_end - cpu_warm) / seconds,
    }


def scenario_pipelined(args: argparse.Namespace) -> dict:
    text = args.mode == "text"
    stream, info = command_stream(args, max(1024, args.window), text)
    result = single_stream(args, text, stream, args.window, 64 * 1024)
    result.update(mode=args.mode, window=args.window, size=args.size, **info)
    return result


def scenario_bulk(args: argparse.Namespace) -> dict:
    text = args.mode == "text"
    stream, info = command_stream(args, max(8, args.window), text)
    result = single_stream(args, text, stream, args.window, 1024 * 1024)
    result.update(mode=args.mode, window=args.window, size=args.size, **info)
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def scenario_reqresp(args: argparse.Namespace) -> dict:
    text = args.mode == "text"
    conns = args.conns
    per_conn = 64
    stream, info = command_stream(args, per_conn * conns, text)
    ep = select.epoll()
    many = Many(args.host, args.port, text, ep)
    opened = many.open(conns, now() + args.stall, args.server_pid or None)
    if len(many.socks) < conns:
        raise Failed(f"only {len(many.socks)} of {conns} connections opened: {opened}")
    socks: dict[int, socket.socket] = dict(many.socks)
    index = {fd: i for i, fd in enumerate(many.order)}  # fd -> connection number
    count = dict.fromkeys(socks, 0)  # fd -> requests answered
    buf = dict.fromkeys(socks, b"")
    sent_at: dict[int, float] = {}
    requests = [p[0] for p in stream.pairs]
    replies = [p[1] for p in stream.pairs]
    expect: dict[int, bytes] = {}  # fd -> the reply to its request in flight
    latencies: list[float] = []
    record = latencies.append
    t_start = now()
    t_warm = t_start + args.warmup
    t_end = t_warm + args.duration
    hard = args.hard_deadline
    measuring = False
    stopping = False
    done_total = 0
    warm_count = end_count = 0
    in_flight = 0
    for fd, sock in socks.items():
        expect[fd] = replies[index[fd] * per_conn]
        sent_at[fd] = now()
        sock.send(requests[index[fd] * per_conn])
        in_flight += 1
    last_progress = now()
    while in_flight:
        events = ep.poll(0.5)
        t = now()
        if not measuring and not stopping and t >= t_warm:
            measuring, warm_count, t_warm, cpu_warm = True, done_total, t, time.process_time()
        if measuring and t >= t_end:
            measuring, stopping, end_count, t_end = False, True, done_total, t
            cpu_end = time.process_time()
        if t > hard:
            raise Deadline(f"hard deadline with {in_flight} requests unanswered")
        if not events and t - last_progress > args.stall:
            raise Failed(f"no reply for {args.stall}s ({in_flight} requests unanswered)")
        for fd, _ev in events:
            sock = socks[fd]
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise Failed(f"server closed connection {index[fd]}")
            if buf[fd]:
                data = buf[fd] + data
            want = expect[fd]
            if data != want:
                if len(data) < len(want) and want.startswith(data):
                    buf[fd] = data
                    continue
                raise Failed(f"connection {index[fd]} request {count[fd]}: got {data[:80]!r}, expected {want[:80]!r}")
            buf[fd] = b""
            if measuring:
                record(t - sent_at[fd])
            done_total += 1
            in_flight -= 1
            count[fd] = n = count[fd] + 1
            if not stopping:
                slot = index[fd] * per_conn + n % per_conn
                expect[fd] = replies[slot]
                sent_at[fd] = now()
                sock.send(requests[slot])
                in_flight += 1
        if events:
            last_progress = t
    many.close_all()
    ep.close()
    if not stopping:
        raise Failed("run ended before the measurement window")
    latencies.sort()
    measured = end_count - warm_count
    seconds = t_end - t_warm
    return {
        "mode": args.mode,
        "conns": conns,
        "size": args.size,
        **info,
        "requests_verified": done_total,
        "measured_requests": measured,
        "seconds": seconds,
        "req_per_s": measured / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1e3,
        "loadgen_cpu_busy": (cpu_end - cpu_warm) / seconds,
    }


def scenario_idle(args: argparse.Namespace) -> dict:
    text = args.mode == "text"
    limit = raise_fd_limit()
    conns = min(args.conns, limit - 64)
    pid = args.server_pid
    deadline = args.hard_deadline
    ep = select.epoll()
    many = Many(args.host, args.port, text, ep)
    overflows0 = listen_overflows()
    if pid:
        time.sleep(0.2)
        rss0 = proc_rss(pid)
        fds0 = proc_fds(pid)
    opened = many.open(conns, deadline, pid)
    held = len(many.socks)
    result: dict = {"mode": args.mode, "asked": args.conns, "fd_limit": limit, **opened}
    if pid:
        # wait until the server has accepted every connection we hold
        while proc_fds(pid) - fds0 < held:
            if now() > deadline:
                raise Deadline(f"server accepted {proc_fds(pid) - fds0} of {held} connections")
            time.sleep(0.05)
        time.sleep(args.settle)
        failures: dict[str, int] = {}
        for fd, _ev in ep.poll(0):
            many.unexpected(fd, failures)
        if failures:
            result["failures_while_held"] = failures
        held = len(many.socks)
        rss1 = proc_rss(pid)
        result.update(
            server_rss_before=rss0,
            server_rss_held=rss1,
            rss_per_conn=(rss1 - rss0) / max(held, 1),
            server_fds_held=proc_fds(pid) - fds0,
        )
    result["held"] = held
    result["listen_overflows"] = listen_overflows() - overflows0 if overflows0 >= 0 else None
    # one request on every connection, all at once; time until every reply is in
    rng = random.Random(args.seed)
    expected: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    t0 = now()
    for n, fd in enumerate(many.order):
        request, reply = encode(make_payload(rng, n, args.size, text), text)
        expected[fd] = reply
        sock = many.socks[fd]
        try:
            sent = sock.send(request)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent != len(request):
            pending[fd] = request[sent:]
    while pending:
        for fd, rest in list(pending.items()):
            sent = many.socks[fd].send(rest)
            if sent == len(rest):
                del pending[fd]
            else:
                pending[fd] = rest[sent:]
    t_sent = now()
    waiting = dict(expected)
    got: dict[int, bytes] = {}
    last = t_sent
    while waiting:
        if now() > deadline:
            raise Deadline(f"{len(waiting)} of {held} idle connections unanswered")
        events = ep.poll(0.5)
        if not events and now() - last > args.stall:
            raise Failed(f"{len(waiting)} of {held} idle connections unanswered after {args.stall}s")
        for fd, _ev in events:
            sock = many.socks.get(fd)
            if sock is None:
                continue
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                raise Failed(f"idle connection: {e}") from None
            if not data:
                raise Failed("server closed an idle connection before answering")
            data = got.get(fd, b"") + data
            want = waiting.get(fd)
            if want is None:
                raise Failed(f"extra bytes on an answered connection: {data[:60]!r}")
            if len(data) < len(want):
                got[fd] = data
                continue
            if data != want:
                raise Failed(f"idle reply: got {data[:80]!r}, expected {want[:80]!r}")
            del waiting[fd]
            got.pop(fd, None)
            last = now()
    result.update(all_answered_s=last - t0, send_s=t_sent - t0)
    if pid:
        result["rss_per_conn_after_request"] = (proc_rss(pid) - rss0) / max(held, 1)
    many.close_all()
    ep.close()
    return result


def scenario_fanout(args: argparse.Namespace) -> dict:
    deadline = args.hard_deadline
    sender = connect(args.host, args.port, True, args.stall)
    sender.setblocking(True)
    sender.settimeout(args.stall)
    sender.sendall(b"SAY probe\nECHO fanout-probe-sync\n")
    buf = b""
    while b"ECHO fanout-probe-sync\r\n" not in buf:
        chunk = sender.recv(4096)
        if not chunk:
            raise Failed("server closed after SAY probe")
        buf += chunk
    lines = buf.split(b"\r\n")
    if b"ERROR UNKNOWN_COMMAND" in lines:
        abort(sender)
        return {"skipped": "server answers ERROR UNKNOWN_COMMAND to SAY (no chat)", "probe": buf.decode("latin-1")}
    sender.setblocking(False)
    ep = select.epoll()
    many = Many(args.host, args.port, True, ep)
    opened = many.open(args.conns - 1, deadline, args.server_pid)
    receivers = list(many.order)
    if len(receivers) < args.conns - 1:
        raise Failed(f"only {len(receivers)} of {args.conns - 1} receivers connected: {opened}")
    ep.register(sender.fileno(), IN)
    times: list[float] = []
    sender_lines: list[bytes] = []
    for r in range(args.rounds):
        token = f"fanout-{r}-{random.Random(args.seed + r).randrange(1 << 40):x}".encode("ascii")
        waiting = set(receivers)
        t0 = now()
        sender.send(b"SAY " + token + b"\n")
        last = t0
        while waiting:
            if now() > deadline:
                raise Deadline(f"round {r}: {len(waiting)} of {len(receivers)} clients without the message")
            events = ep.poll(0.5)
            if not events and now() - last > args.stall:
                raise Failed(f"round {r}: {len(waiting)} of {len(receivers)} clients without the message")
            for fd, _ev in events:
                if fd == sender.fileno():
                    data = sender.recv(65536)
                    if not data:
                        raise Failed("server closed the sender")
                    sender_lines.extend(data.split(b"\r\n"))
                    if any(line.startswith(b"ERROR") for line in sender_lines):
                        raise Failed(f"SAY answered with an error: {sender_lines!r}")
                    continue
                sock = many.socks[fd]
                data = many.bufs[fd] + sock.recv(65536)
                *complete, many.bufs[fd] = data.split(b"\r\n")
                for line in complete:
                    if line.startswith(b"MSG ") and token in line:
                        waiting.discard(fd)
                        last = now()
        times.append(last - t0)
        time.sleep(0.05)
    many.close_all()
    abort(sender)
    ep.close()
    return {
        "receivers": len(receivers),
        "rounds": len(times),
        "round_ms": [t * 1e3 for t in times],
        "fanout_ms": statistics.median(times) * 1e3,
        "open_seconds": opened["open_seconds"],
    }


SCENARIOS = {
    "pipelined": scenario_pipelined,
    "reqresp": scenario_reqresp,
    "bulk": scenario_bulk,
    "idle": scenario_idle,
    "fanout": scenario_fanout,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--port", type=int, required=True, help="the server port of the chosen mode")
    common.add_argument("--mode", choices=("binary", "text"), default="binary")
    common.add_argument("--timeout", type=float, default=60.0, help="hard bound for the whole run (s)")
    common.add_argument("--stall", type=float, default=10.0, help="give up after this long without progress (s)")
    common.add_argument("--seed", type=int, default=7)
    common.add_argument("--server-pid", type=int, default=0, help="server pid, for /proc RSS and fd counts")
    timed = argparse.ArgumentParser(add_help=False)
    timed.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    timed.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    timed.add_argument("--max-requests", type=int, default=50_000_000, help="stop sending after this many")
    timed.add_argument(
        "--command",
        choices=COMMANDS,
        default="echo",
        help="what the requests ask: ECHO, REVERSE, or mixed (ECHO, REVERSE, HELP, HELP ECHO and an unknown "
        "command in turn; the HELP replies are learned from the server on a setup connection)",
    )
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("pipelined", parents=[common, timed], help="1 connection, a window of requests in flight")
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--size", type=int, default=32)
    p = sub.add_parser("reqresp", parents=[common, timed], help="many connections, one request in flight each")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p = sub.add_parser("bulk", parents=[common, timed], help="1 connection, a few large frames in flight")
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--size", type=int, default=1024 * 1024)
    p = sub.add_parser("idle", parents=[common], help="many idle connections, then one request each")
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--settle", type=float, default=0.5, help="seconds between the last accept and the RSS reading")
    p = sub.add_parser("fanout", parents=[common], help="one SAY to many text clients")
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.scenario == "fanout":
        args.mode = "text"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    args.hard_deadline = now() + args.timeout

    def on_alarm(*_: object) -> None:
        raise Deadline(f"--timeout {args.timeout}s exceeded")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout) + 5)
    started = now()
    try:
        result = SCENARIOS[args.scenario](args)
        result["ok"] = True
        status = 0
    except (Failed, OSError) as e:
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        status = 1
    signal.alarm(0)
    result.update(scenario=args.scenario, mode=args.mode, wall_s=now() - started)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
