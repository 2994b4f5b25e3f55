"""Chat on the real server, text and binary clients in one room."""

from __future__ import annotations

import threading

from twisted.trial.unittest import SynchronousTestCase

from tests.support import RunningServer, read_lines
from tests.test_e2e import recv_frames
from tinytcp.protocol.reply import Code
from tinytcp.protocol.wire import encode_frame


class ChatEndToEndTests(SynchronousTestCase):
    def test_nick_say_who_and_presence_both_ways(self) -> None:
        server = RunningServer()
        self.addCleanup(server.stop)
        with server.connect() as text, server.connect("binary") as binary, server.connect() as lurker:
            read_lines(text, 1)
            read_lines(lurker, 1)
            text.sendall(b"NICK ann\n")
            self.assertEqual(read_lines(text, 1), [b"NICK ann"])
            binary.sendall(encode_frame(Code.NICK, b"bin"))
            self.assertEqual(recv_frames(binary, 1), [(Code.NICK, b"bin")])
            self.assertEqual(read_lines(text, 1), [b"MSG * bin joined"])
            text.sendall(b"WHO\nSAY hello, binary\n")
            self.assertEqual(read_lines(text, 2), [b"WHO ann bin +1", b"SAID 2"])
            self.assertEqual(recv_frames(binary, 1), [(0x80, b"ann hello, binary")])
            self.assertEqual(read_lines(lurker, 1), [b"MSG ann hello, binary"])
            binary.sendall(encode_frame(Code.SAY, "héllo 👋".encode()) + encode_frame(Code.NICK, b"ann"))
            self.assertEqual(recv_frames(binary, 2), [(Code.SAY, b"2"), (0xFF, b"NICK_TAKEN")])
            self.assertEqual(read_lines(text, 1), ["MSG bin héllo 👋".encode()])
            self.assertEqual(read_lines(lurker, 1), ["MSG bin héllo 👋".encode()])
            binary.sendall(encode_frame(Code.NICK, b"binny"))
            self.assertEqual(recv_frames(binary, 1), [(Code.NICK, b"binny")])
            self.assertEqual(read_lines(text, 1), [b"MSG * bin is now binny"])
            binary.sendall(encode_frame(Code.QUIT, b""))
            self.assertEqual(recv_frames(binary, 1), [(Code.QUIT, b"BYE")])
            self.assertEqual(read_lines(text, 1), [b"MSG * binny left"])
            lurker.sendall(b"WHO\n")
            self.assertEqual(read_lines(lurker, 1), [b"WHO ann +1"])

    def test_slow_consumer_is_cut_off_and_nobody_else_waits(self) -> None:
        server = RunningServer("--max-frame", "1024", "--max-pending", "1", "--say-rate", "0")
        self.addCleanup(server.stop)
        speaker = server.connect(timeout=60)
        slow = server.connect(timeout=60)
        reader = server.connect("binary", timeout=60)
        for sock in (speaker, slow, reader):
            self.addCleanup(sock.close)
        read_lines(speaker, 1)
        server.wait_for_log(r"connected \(binary\)")
        count, payload = 300, b"z" * 60_000
        got: list[tuple[int, bytes]] = []
        reading = threading.Thread(target=lambda: got.extend(recv_frames(reader, count)), daemon=True)
        reading.start()
        replies: list[bytes] = []
        for _ in range(count):
            speaker.sendall(b"SAY " + payload + b"\n")
            replies += read_lines(speaker, 1)
        reading.join(60)
        self.assertEqual(len(got), count)
        self.assertTrue(all(message == (0x80, b"guest1 " + payload) for message in got))
        self.assertEqual(replies[0], b"SAID 2")
        self.assertEqual(replies[-1], b"SAID 1")
        server.wait_for_log(r"closing: over 66560 bytes of pushed messages unread \(--max-pending\)")
