"""Trivial server: the load generator's ceiling, not a protocol implementation.

It parses nothing.  Binary port: every byte received is sent straight back (an ECHO frame's
reply is the frame itself).  Text port: ``WELCOME <banner>\\r\\n`` on connect, then every byte
back with LF turned into CRLF (``ECHO x\\n`` -> ``ECHO x\\r\\n``), one C-level ``replace`` per
read.  A bare ``select.epoll`` loop, no asyncio: per read it costs one ``recv`` and one ``send``.

Whatever rate the load generator reaches against this server is the most it can measure on
this machine; ``benchmarks/run.py`` prints it beside tinytcp and the reference so a reader can
tell whether the generator, not the server, was the limit.

Usage: ``python benchmarks/trivial_server.py --port 40000 --binary-port 40001``
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket

from reference_server import listening_socket  # run as a script: benchmarks/ is on sys.path

IN = select.EPOLLIN
OUT = select.EPOLLOUT
RECV = 256 * 1024


def serve(args: argparse.Namespace) -> None:
    welcome = b"WELCOME " + args.banner.encode("utf-8") + b"\r\n"
    ep = select.epoll()
    listeners: dict[int, tuple[socket.socket, bool]] = {}
    text_sock = listening_socket(args.port, args.host, args.backlog)
    listeners[text_sock.fileno()] = (text_sock, True)
    if args.binary_port:
        binary_sock = listening_socket(args.binary_port, args.host, args.backlog)
        listeners[binary_sock.fileno()] = (binary_sock, False)
    for fd in listeners:
        ep.register(fd, IN)
    #: fd -> [socket, is_text, pending output (memoryview or None)]
    conns: dict[int, list] = {}
    running = [True]

    def stop(*_: object) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"trivial server pid {os.getpid()} text {args.host}:{args.port} binary {args.binary_port}", flush=True)

    def close(fd: int) -> None:
        conn = conns.pop(fd, None)
        if conn is not None:
            try:
                ep.unregister(fd)
            except OSError:
                pass
            conn[0].close()

    while running[0]:
        try:
            events = ep.poll(1.0)
        except InterruptedError:
            continue
        for fd, ev in events:
            conn = conns.get(fd)
            if conn is None:
                listener = listeners.get(fd)
                if listener is None:
                    continue
                sock, text = listener
                for _ in range(256):
                    try:
                        client, _addr = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            break
                        raise
                    client.setblocking(False)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    cfd = client.fileno()
                    conns[cfd] = [client, text, None]
                    ep.register(cfd, IN)
                    if text:
                        client.send(welcome)
                continue
            sock = conn[0]
            if ev & OUT:
                pending = conn[2]
                try:
                    n = sock.send(pending)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    close(fd)
                    continue
                pending = pending[n:]
                if pending:
                    conn[2] = pending
                else:
                    conn[2] = None
                    ep.modify(fd, IN)
                continue
            if ev & (IN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = sock.recv(RECV)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    close(fd)
                    continue
                if not data:
                    close(fd)
                    continue
                if conn[1]:
                    data = data.replace(b"\n", b"\r\n")
                try:
                    n = sock.send(data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    close(fd)
                    continue
                if n < len(data):
                    # stop reading until the rest is out: the simplest backpressure
                    conn[2] = memoryview(data)[n:]
                    ep.modify(fd, OUT)
    for fd in list(conns):
        close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=40000, help="text-mode port")
    parser.add_argument("--binary-port", type=int, default=40001, help="binary-mode port (0: none)")
    parser.add_argument("--banner", default="tinytcp 0.1 ready; type HELP")
    parser.add_argument("--backlog", type=int, default=50)
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
