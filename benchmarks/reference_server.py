"""Reference server for the benchmarks: tinytcp's two wire formats on asyncio's Protocol API.

This is the yardstick ``benchmarks/run.py`` measures tinytcp against: the strongest plain
Python design we know for the same bytes (stdlib asyncio, ``asyncio.Protocol``, no uvloop;
the one C extension is ``regex``, which tinytcp's REVERSE uses too), written for speed but
without cutting protocol corners that matter for the benchmarked traffic:

- text mode: ``WELCOME <banner>\\r\\n`` on connect; lines end in LF or CRLF; the command word
  is case-insensitive; ``ECHO <text>`` -> ``ECHO <text>\\r\\n`` (argument = rest of the line
  after the first run of blanks, trailing blanks removed, must be UTF-8); ``REVERSE <text>``
  (or ``REV``) -> ``REVERSE <text reversed>\\r\\n``; ``HELP`` -> ``HELP <command names>\\r\\n``,
  ``HELP <command>`` -> ``HELP <its usage>\\r\\n``; ``QUIT``/``EXIT`` -> ``BYE\\r\\n`` and close;
  lines longer than --max-line -> ``ERROR LINE_TOO_LONG`` and close; anything else ->
  ``ERROR UNKNOWN_COMMAND`` (or ``ERROR BAD_ARGUMENTS``/``BAD_ENCODING``).
- binary mode: frames ``[code u8][length u32 BE][payload]``; ECHO (1) is answered with the
  identical frame; REVERSE (2) with frame (2, the payload reversed); HELP (5) with frame (5,
  the command names), or (5, the usage) when the payload names a command; QUIT (3) -> frame
  (3, ``BYE``) and close; a length over --max-frame -> error frame (0xFF, ``FRAME_TOO_LARGE``)
  and close; other codes -> error frame ``UNKNOWN_COMMAND``.
- REVERSE decodes the UTF-8 argument (``BAD_ENCODING`` when it is not UTF-8) and reverses
  it as tinytcp does: ``[::-1]`` for ASCII without CR, grapheme clusters (the ``regex``
  module's ``\\X``) otherwise, then encodes the result; the work is done for every
  request, nothing is cached.
- HELP's command names and usage lines are tinytcp's, held here as constant replies: the
  reference implements only ECHO, REVERSE, HELP and QUIT (and SAY below), but HELP answers
  the same bytes as tinytcp (as of this file), so the mixed stream costs both the same.
- ``SAY <text>`` (text mode, only with ``--chat``): ``MSG <text>\\r\\n`` to every other text
  client, with no nicks or rate limit as tinytcp's chat has; the flag exists so the fan-out
  scenario can be exercised.

Usage: ``python benchmarks/reference_server.py --port 40000 --binary-port 40001``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct

import regex

CRLF = b"\r\n"
HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size
ECHO, REVERSE, QUIT, HELP = 1, 2, 3, 5
ERROR = 0xFF
GRAPHEME = regex.compile(r"\X")

#: tinytcp's commands in its HELP order, with their usage lines (tinytcp/protocol/core.py)
USAGE = {
    "TIME": "TIME: the server's local time, ISO 8601 with its UTC offset",
    "ECHO": "ECHO <text>: send the text back unchanged",
    "REVERSE": "REVERSE <text> (alias REV): the text reversed, character by character as a reader sees them",
    "HELP": "HELP [command]: the command names, or the usage of one command",
    "NICK": "NICK <name>: chat as name (1-32 letters, digits, _ or -)",
    "SAY": "SAY <text>: send MSG <your nick> <text> to every other client",
    "WHO": "WHO: the nicks in the chat, then +N for the guests",
    "INFO": "INFO [section]: server status as key:value fields; sections: server clients stats chat",
    "QUIT": "QUIT (alias EXIT): the server says BYE and closes the connection",
}
ALIASES = {"REV": "REVERSE", "EXIT": "QUIT"}


def reverse_text(text: str) -> str:
    """Reverse what a reader sees as characters, so combining marks and emoji survive."""
    if text.isascii() and "\r" not in text:  # CR LF is one grapheme
        return text[::-1]
    return "".join(reversed(GRAPHEME.findall(text)))


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
HELP_LIST = " ".join(USAGE).encode("ascii")
HELP_LINE = b"HELP " + HELP_LIST + CRLF
HELP_FRAME = HEADER.pack(HELP, len(HELP_LIST)) + HELP_LIST


def usage_replies() -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """Command name (upper case, aliases too) -> its HELP reply, as a line and as a frame:
    constant replies, built once like the error replies above."""
    lines, frames = {}, {}
    for name, command in [*((n, n) for n in USAGE), *ALIASES.items()]:
        usage = USAGE[command].encode("utf-8")
        lines[name.encode("ascii")] = b"HELP " + usage + CRLF
        frames[name.encode("ascii")] = HEADER.pack(HELP, len(usage)) + usage
    return lines, frames


USAGE_LINES, USAGE_FRAMES = usage_replies()
BAD_ENCODING_FRAME = error_frame("BAD_ENCODING")


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
            elif word == b"REVERSE" or word == b"REV":
                if len(parts) == 1:
                    append(BAD_ARGS_LINE)
                    continue
                try:
                    text = parts[1].rstrip().decode("utf-8")
                except UnicodeDecodeError:
                    append(BAD_ENCODING_LINE)
                    continue
                append(b"REVERSE " + reverse_text(text).encode("utf-8") + CRLF)
            elif word == b"HELP":
                append(HELP_LINE if len(parts) == 1 else USAGE_LINES.get(parts[1].rstrip().upper(), UNKNOWN_LINE))
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
            elif code == REVERSE:
                try:
                    text = data[offset + HEADER_SIZE : end].decode("utf-8")
                except UnicodeDecodeError:
                    out.append(BAD_ENCODING_FRAME)
                else:
                    payload = reverse_text(text).encode("utf-8")
                    out.append(HEADER.pack(REVERSE, len(payload)) + payload)
            elif code == HELP:
                if length == 0:
                    out.append(HELP_FRAME)
                else:
                    out.append(USAGE_FRAMES.get(data[offset + HEADER_SIZE : end].upper(), UNKNOWN_FRAME))
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
