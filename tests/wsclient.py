"""A WebSocket client for tests, built byte by byte so that tests can also send what browsers never do."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One masked client frame (RFC 6455 section 5.2)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack(">BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack(">BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack(">BBQ", first, 0x80 | 127, length)
    return header + mask + apply_mask(payload, mask)


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask`` (whole-number arithmetic: fast for megabytes)."""
    if not payload or mask == b"\0\0\0\0":
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def frame_header(opcode: int, length: int, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """The header alone of a masked client frame announcing ``length`` payload bytes."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack(">BB", first, 0x80 | length) + mask
    if length < 1 << 16:
        return struct.pack(">BBH", first, 0x80 | 126, length) + mask
    return struct.pack(">BBQ", first, 0x80 | 127, length) + mask


def take_frame(data: bytes) -> tuple[tuple[int, bytes], bytes] | None:
    """The first complete unmasked server frame of ``data`` and the bytes after it; None if incomplete."""
    if len(data) < 2:
        return None
    length, start = data[1] & 0x7F, 2
    if length == 126:
        if len(data) < 4:
            return None
        length, start = struct.unpack(">H", data[2:4])[0], 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, start = struct.unpack(">Q", data[2:10])[0], 10
    if len(data) < start + length:
        return None
    return (data[0] & 0x0F, data[start : start + length]), data[start + length :]


def parse_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete server frames at the start of ``data``, and the bytes left over."""
    frames = []
    while (taken := take_frame(data)) is not None:
        frame, data = taken
        frames.append(frame)
    return frames, data


def upgrade_request(host: str, path: str = "/ws", origin: str | None = None) -> bytes:
    """The HTTP request that opens a WebSocket."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class WebSocketClient:
    """A blocking WebSocket connection to 127.0.0.1:``port``."""

    def __init__(
        self,
        port: int,
        origin: str | None = None,
        timeout: float = 10.0,
        path: str = "/ws",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.settimeout(timeout)
        self.sock.sendall(upgrade_request(f"127.0.0.1:{port}", path, origin))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            response += chunk
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.head = head.decode("latin-1")

    def send(self, text: str | bytes, opcode: int = TEXT) -> None:
        self.sock.sendall(client_frame(opcode, text.encode("utf-8") if isinstance(text, str) else text))

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server; (CLOSE, b"") when the connection ends without one."""
        while True:
            taken = take_frame(self._buffer)
            if taken is not None:
                frame, self._buffer = taken
                return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                return CLOSE, b""
            self._buffer += chunk

    def messages(self, count: int) -> list[str]:
        """The next ``count`` text messages (pings and pongs skipped)."""
        got = []
        while len(got) < count:
            opcode, payload = self.frame()
            if opcode == CLOSE:
                raise AssertionError(f"closed after {got!r}: {close_code(payload)}")
            if opcode == TEXT:
                got.append(payload.decode("utf-8"))
        return got

    def until_close(self) -> tuple[list[str], int | None]:
        """Every text message until the server's close frame, and that frame's close code."""
        got = []
        while True:
            opcode, payload = self.frame()
            if opcode == CLOSE:
                return got, close_code(payload)
            if opcode == TEXT:
                got.append(payload.decode("utf-8"))

    def close(self) -> None:
        self.sock.close()


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload, None when it has none."""
    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
