"""Reference server for the benchmarks: tinytcp's two wire formats on asyncio's Protocol API.

This is the yardstick ``benchmarks/run.py`` measures tinytcp against: the strongest plain
Python design we know for the same bytes (stdlib asyncio, ``asyncio.Protocol``, no uvloop,
no C extension), written for speed but without cutting protocol corners that matter for
the benchmarked traffic:

- text mode: ``WELCOME <banner>\\r\\n`` on connect; lines end in LF or CRLF; the command word
  is case-insensitive; ``ECHO <text>`` -> ``ECHO <text>\\r\\n`` (argument = rest of the line
  after the first run of blanks, trailing blanks removed, must be UTF-8); ``QUIT``/``EXIT`` ->
  ``BYE\\r\\n`` and close; lines longer than --max-line -> ``ERROR LINE_TOO_LONG`` and close;
  anything else -> ``ERROR UNKNOWN_COMMAND`` (or ``ERROR BAD_ARGUMENTS``/``BAD_ENCODING``).
- binary mode: frames ``[code u8][length u32 BE][payload]``; ECHO (1) is answered with the
  identical frame; QUIT (3) -> frame (3, ``BYE``) and close; a length over --max-frame ->
  error frame (0xFF, ``FRAME_TOO_LARGE``) and close; other codes -> error frame
  ``UNKNOWN_COMMAND``.
- ``SAY <text>`` (text mode, only with ``--chat``): ``MSG <text>\\r\\n`` to every other text
  client. tinytcp has no chat yet; the flag exists so the fan-out scenario can be exercised.

Usage: ``python benchmarks/reference_server.py --port 40000 --binary-port 40001``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct

CRLF = b"\r\n"
HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size
ECHO, QUIT = 1, 3
ERROR = 0xFF


def error_line(name: str) -> bytes:
    return b"ERROR " + name.encode("ascii") + CRLF


def error_frame(name: str) -> bytes:
    payload = name.encode("ascii")
    return HEADER.pack(ERROR, len(payload)) + payload


UNKNOWN_LINE = error_line("UNKNOWN_COMMAND")
BAD_ARGS_LINE = error_line("BAD_ARGUMENTS")
BAD_ENCODING_LINE = error_line("BAD_ENCODING")
TOO_LONG_LINE = error_line("LINE_TOO_LONG")
BYE_LINE = b"BYE" + CRLF
UNKNOWN_FRAME = error_frame("UNKNOWN_COMMAND")
TOO_LARGE_FRAME = error_frame("FRAME_TOO_LARGE")
BYE_FRAME = HEADER.pack(QUIT, 3) + b"BYE"


class Settings:
    banner = b"tinytcp 0.1 ready; type HELP"
    max_line = 64 * 1024
    max_frame = 1024 * 1024
    chat = False
    read_size = 0


TEXT_CLIENTS: set[TextProtocol] = set()


class TextProtocol(asyncio.Protocol):
    """One text client: split each read on LF with bytes.split, answer all lines in one write."""

    __slots__ = ("transport", "rest", "closing")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.rest = b""
        self.closing = False
        if Settings.read_size:
            transport.max_size = Settings.read_size  # type: ignore[attr-defined]
        TEXT_CLIENTS.add(self)
        transport.write(b"WELCOME " + Settings.banner + CRLF)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        TEXT_CLIENTS.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.rest:
            data = self.rest + data
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(rest) > Settings.max_line:
            self._close(TOO_LONG_LINE)
            return
        self.rest = rest
        out = []
        append = out.append
        max_line = Settings.max_line
        for line in lines:
            if len(line) > max_line:
                append(TOO_LONG_LINE)
                self._close(b"".join(out))
                return
            parts = line.split(None, 1)
            if not parts:
                continue
            word = parts[0].upper()
            if word == b"ECHO":
                if len(parts) == 1:
                    append(BAD_ARGS_LINE)
                    continue
                argument = parts[1].rstrip()
                if not argument.isascii():
                    try:
                        argument.decode("utf-8")
                    except UnicodeDecodeError:
                        append(BAD_ENCODING_LINE)
                        continue
                append(b"ECHO " + argument + CRLF)
            elif word == b"QUIT" or word == b"EXIT":
                append(BYE_LINE)
                self._close(b"".join(out))
                return
            elif word == b"SAY" and Settings.chat and len(parts) == 2:
                message = b"MSG " + parts[1].rstrip() + CRLF
                for client in TEXT_CLIENTS:
                    if client is not self and not client.closing:
                        client.transport.write(message)  # type: ignore[attr-defined]
            else:
                append(UNKNOWN_LINE)
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[attr-defined]

    def _close(self, last: bytes) -> None:
        self.closing = True
        self.rest = b""
        if last:
            self.transport.write(last)  # type: ignore[attr-defined]
        self.transport.close()


class BinaryProtocol(asyncio.Protocol):
    """One binary client: cut frames with offsets into each read; a frame that spans reads is
    kept as a list of chunks and joined once; an ECHO reply is the request frame itself."""

    __slots__ = ("transport", "chunks", "have", "need", "closing")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.chunks: list[bytes] | None = None
        self.have = 0
        self.need = 0
        self.closing = False
        if Settings.read_size:
            transport.max_size = Settings.read_size  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.chunks = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.chunks is not None:
            self.chunks.append(data)
            self.have += len(data)
            if self.have < self.need:
                return
            data = b"".join(self.chunks)
            self.chunks = None
        size = len(data)
        offset = 0
        need = HEADER_SIZE
        out = []
        unpack = HEADER.unpack_from
        max_frame = Settings.max_frame
        while size - offset >= HEADER_SIZE:
            code, length = unpack(data, offset)
            if length > max_frame:
                out.append(TOO_LARGE_FRAME)
                self._close(b"".join(out))
                return
            end = offset + HEADER_SIZE + length
            if end > size:
                need = HEADER_SIZE + length
                break
            if code == ECHO:
                out.append(data if (offset == 0 and end == size) else data[offset:end])
            elif code == QUIT and length == 0:
                out.append(BYE_FRAME)
                self._close(b"".join(out))
                return
            else:
                out.append(UNKNOWN_FRAME)
            offset = end
        if offset < size:
            rest = data[offset:] if offset else data
            self.chunks = [rest]
            self.have = len(rest)
            self.need = need
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[attr-defined]

    def _close(self, last: bytes) -> None:
        self.closing = True
        self.chunks = None
        self.transport.write(last)  # type: ignore[attr-defined]
        self.transport.close()


def listening_socket(port: int, host: str, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    servers = [
        await loop.create_server(TextProtocol, sock=listening_socket(args.port, args.host, args.backlog)),
    ]
    if args.binary_port:
        sock = listening_socket(args.binary_port, args.host, args.backlog)
        servers.append(await loop.create_server(BinaryProtocol, sock=sock))
    print(f"reference server pid {os.getpid()} text {args.host}:{args.port} binary {args.binary_port}", flush=True)
    await stop
    for server in servers:
        server.close()
    for client in list(TEXT_CLIENTS):
        client.transport.abort()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=40000, help="text-mode port")
    parser.add_argument("--binary-port", type=int, default=40001, help="binary-mode port (0: none)")
    parser.add_argument("--banner", default=Settings.banner.decode())
    parser.add_argument("--max-line", type=int, default=Settings.max_line)
    parser.add_argument("--max-frame", type=int, default=Settings.max_frame)
    parser.add_argument("--backlog", type=int, default=50, help="listen backlog (Twisted's default is 50)")
    parser.add_argument("--chat", action="store_true", help="answer SAY with MSG to every other text client")
    parser.add_argument("--read-size", type=int, default=0, help="bytes per recv (0: asyncio's default, 256 KiB)")
    args = parser.parse_args()
    Settings.banner = args.banner.encode("utf-8")
    Settings.max_line = args.max_line
    Settings.max_frame = args.max_frame
    Settings.chat = args.chat
    Settings.read_size = args.read_size
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
