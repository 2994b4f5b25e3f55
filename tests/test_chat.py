"""Chat: nicks, SAY, WHO and presence across text and binary clients, and slow consumers."""

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, make_server
from tinytcp.protocol.core import Core, Session
from tinytcp.protocol.reply import Code, Reply, error
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.text import TextProtocol


class Pushes:
    """A session whose pushed messages are kept as text lines."""

    def __init__(self, core: Core) -> None:
        self.got: list[bytes] = []
        self.session = Session("text", lambda reply: reply.payload, self.got.append)
        core.room.join(self.session)

    def __call__(self, core: Core, word: bytes, argument: bytes | None = None) -> Reply:
        return core.text_request(self.session, word, argument)


class CoreChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.core = Core()
        self.alice, self.bob, self.guest = Pushes(self.core), Pushes(self.core), Pushes(self.core)

    def test_nick_rules(self) -> None:
        self.assertEqual(self.alice(self.core, b"NICK", b"alice"), Reply(Code.NICK, b"alice"))
        self.assertEqual(self.bob(self.core, b"NICK", b"ALICE"), error("NICK_TAKEN"))
        for bad in (b"", b"a" * 33, b"al ice", b"al.ice", "é".encode()):
            self.assertEqual(self.bob(self.core, b"NICK", bad or None), error("BAD_ARGUMENTS"), bad)
        self.assertEqual(self.bob(self.core, b"NICK", b"B_o-b" + b"9" * 27), Reply(Code.NICK, b"B_o-b" + b"9" * 27))
        self.assertEqual(self.alice(self.core, b"NICK", b"Alice"), Reply(Code.NICK, b"Alice"))

    def test_say_reaches_every_other_client_guests_included(self) -> None:
        self.alice(self.core, b"NICK", b"alice")
        self.assertEqual(self.alice(self.core, b"SAY", b"hi  all"), Reply(Code.SAY, b"2"))
        self.assertEqual(self.bob.got, [b"alice hi  all"])
        self.assertEqual(self.guest.got, [b"alice hi  all"])
        self.assertEqual(self.alice.got, [])
        self.assertEqual(self.guest(self.core, b"SAY", b"yo"), Reply(Code.SAY, b"2"))
        self.assertEqual(self.alice.got, [b"guest3 yo"])

    def test_say_needs_text(self) -> None:
        self.assertEqual(self.alice(self.core, b"SAY"), error("BAD_ARGUMENTS"))

    def test_say_cannot_forge_lines(self) -> None:
        for text in (b"x\r\nBYE", b"x\nBYE", b"x\r"):
            self.assertEqual(self.alice(self.core, b"SAY", text), error("BAD_ARGUMENTS"))
        self.assertEqual(self.bob.got, [])

    def test_who(self) -> None:
        self.assertEqual(self.alice(self.core, b"WHO"), Reply(Code.WHO, b"+3"))
        self.bob(self.core, b"NICK", b"bob")
        self.alice(self.core, b"NICK", b"Alice")
        self.assertEqual(self.guest(self.core, b"WHO"), Reply(Code.WHO, b"Alice bob +1"))
        self.guest(self.core, b"NICK", b"carol")
        self.assertEqual(self.guest(self.core, b"WHO"), Reply(Code.WHO, b"Alice bob carol"))

    def test_presence_goes_to_chat_users_only(self) -> None:
        self.alice(self.core, b"NICK", b"alice")
        self.assertEqual(self.alice.got, [])
        self.bob(self.core, b"NICK", b"bob")
        self.assertEqual(self.alice.got, [b"* bob joined"])
        self.bob(self.core, b"NICK", b"robert")
        self.assertEqual(self.alice.got, [b"* bob joined", b"* bob is now robert"])
        self.core.room.leave(self.bob.session)
        self.assertEqual(self.alice.got[-1], b"* robert left")
        self.core.room.leave(self.guest.session)
        self.assertEqual(self.guest.got, [])
        self.assertEqual(len(self.alice.got), 3)
        self.assertEqual(self.alice(self.core, b"NICK", b"robert"), Reply(Code.NICK, b"robert"))


class ChatProtocolTests(SynchronousTestCase):
    def test_text_and_binary_clients_chat(self) -> None:
        server = make_server()
        text, text_transport = connect(TextProtocol, server, port=1)
        binary, binary_transport = connect(BinaryProtocol, server, port=2)
        text_transport.clear()
        text.dataReceived(b"NICK ann\n")
        binary.dataReceived(encode_frame(Code.NICK, b"bin"))
        self.assertEqual(text_transport.value(), b"NICK ann\r\nMSG * bin joined\r\n")
        self.assertEqual(binary_transport.value(), encode_frame(6, b"bin"))
        text_transport.clear()
        binary_transport.clear()
        binary.dataReceived(encode_frame(Code.SAY, "héllo".encode()) + encode_frame(Code.WHO, b""))
        self.assertEqual(text_transport.value(), "MSG bin héllo\r\n".encode())
        self.assertEqual(binary_transport.value(), encode_frame(7, b"1") + encode_frame(8, b"ann bin"))
        binary_transport.clear()
        text.dataReceived(b"SAY hi bin\n")
        self.assertEqual(binary_transport.value(), encode_frame(0x80, b"ann hi bin"))
        text.dataReceived(b"QUIT\n")
        text.connectionLost()
        self.assertEqual(
            binary_transport.value(), encode_frame(0x80, b"ann hi bin") + encode_frame(0x80, b"* ann left")
        )

    def test_binary_say_must_be_utf8(self) -> None:
        server = make_server()
        binary, transport = connect(BinaryProtocol, server)
        binary.dataReceived(encode_frame(Code.SAY, b"\xff"))
        self.assertEqual(transport.value(), encode_frame(0xFF, b"BAD_ENCODING"))

    def test_churn_of_non_chat_clients_writes_nothing(self) -> None:
        server = make_server()
        chatter, transport = connect(TextProtocol, server)
        chatter.dataReceived(b"NICK ann\n")
        transport.clear()
        for port in range(100):
            other, _ = connect(BinaryProtocol, server, port=port)
            other.connectionLost()
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(server.core.room.members), 1)


class SlowConsumerTests(SynchronousTestCase):
    def test_a_client_that_stops_reading_pushes_is_cut_off_and_others_are_not(self) -> None:
        server = make_server(max_frame=1000, max_pending=2000, say_rate=0)
        self.assertEqual(server.max_pending, 1000 + 64 * 1024)
        speaker, _ = connect(TextProtocol, server, port=1)
        slow, slow_transport = connect(TextProtocol, server, port=2)
        reader, reader_transport = connect(BinaryProtocol, server, port=3)
        slow.pauseProducing()
        message = b"SAY " + b"m" * 990 + b"\n"
        for _ in range(66):
            speaker.dataReceived(message)
            slow.pauseProducing()  # as the transport does on every write while its buffer is full
        self.assertFalse(slow_transport.disconnecting)
        speaker.dataReceived(message)
        self.assertTrue(slow_transport.disconnecting)
        self.assertTrue(slow_transport.value().endswith(b"ERROR SLOW_CONSUMER\r\n"))
        self.assertEqual(reader_transport.value().count(b"\x80\x00\x00\x03\xe5guest1 "), 67)
        speaker_replies = speaker.transport.value()
        self.assertTrue(speaker_replies.endswith(b"SAID 2\r\n"), speaker_replies[-20:])
        speaker.dataReceived(b"SAY who is left\n")
        self.assertTrue(speaker.transport.value().endswith(b"SAID 1\r\n"))
        self.assertFalse(reader_transport.disconnecting)
        server.reactor.advance(server.settings.shutdown_grace)
        self.assertTrue(slow_transport.disconnected)
        slow.connectionLost()
        speaker.dataReceived(b"SAY still here\n")
        self.assertTrue(reader_transport.value().endswith(b"guest1 still here"))

    def test_a_client_that_reads_again_starts_afresh(self) -> None:
        server = make_server(max_frame=1000, max_pending=0, say_rate=0)
        speaker, _ = connect(TextProtocol, server, port=1)
        listener, transport = connect(TextProtocol, server, port=2)
        message = b"SAY " + b"m" * 30000 + b"\n"
        for _ in range(10):
            listener.pauseProducing()
            speaker.dataReceived(message)
            speaker.dataReceived(message)
            listener.resumeProducing()
        self.assertFalse(transport.disconnecting)
