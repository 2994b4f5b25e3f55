"""TLS end to end: the real ``twistd tinytcp`` on ``ssl:`` and ``tls:`` listeners with
certificates these tests make (tests/certs.py), reached by ``tinytcp-client``, the library and
Python's own ``ssl`` module."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from tests.certs import PKI, make_pki
from tests.support import RunningServer, read_lines, read_until_closed
from tests.test_cli import run_client
from tests.test_e2e import recv_frames
from tinytcp.client import ConnectionClosed, TLSConfigError, TLSSettings, connect
from tinytcp.protocol.reply import Code, Reply
from tinytcp.protocol.wire import encode_frame

BANNER = b"WELCOME tinytcp 0.1 ready; type HELP"


def ssl_listener(pki: PKI) -> str:
    return f"ssl:0:interface=127.0.0.1:privateKey={pki.server_key}:certKey={pki.server_cert}"


class TLSCase(unittest.TestCase):
    """A server with one extra ``ssl:`` listener per mode; ``tls_port(mode)`` is that listener."""

    timeout = 60
    server_args: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.pki = make_pki()
        self.addCleanup(shutil.rmtree, self.pki.folder, True)
        listener = ssl_listener(self.pki)
        self.server = RunningServer("--port", listener, "--binary-port", listener, *self.server_args)
        self.addCleanup(self.server.stop)

    def tls_port(self, mode: str = "text") -> int:
        return self.server.ports_of(mode, 2)[1]

    def tls_socket(self, mode: str = "text", cert: str | None = None) -> ssl.SSLSocket:
        """Python's ssl module, verifying the server against the test CA."""
        context = ssl.create_default_context(cafile=self.pki.ca)
        if cert is not None:
            context.load_cert_chain(cert)
        raw = socket.create_connection(("127.0.0.1", self.tls_port(mode)), timeout=10)
        return context.wrap_socket(raw, server_hostname="localhost")

    def client(self, *args: str, mode: str = "text") -> list[str]:
        return ["--port", str(self.tls_port(mode)), *(["--binary"] if mode == "binary" else []), *args]


class ClientCommandLineTests(TLSCase):
    def test_verified_round_trip_in_both_modes(self) -> None:
        for mode in ("text", "binary"):
            result = run_client(*self.client("--tls", "--cafile", self.pki.ca, "ECHO over TLS", "QUIT", mode=mode))
            self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO over TLS\nBYE\n", ""))

    def test_hostname_is_checked_and_may_be_given(self) -> None:
        result = run_client(*self.client("--tls", "--cafile", self.pki.ca, "--host", "localhost", "TIME"))
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        result = run_client(*self.client("--tls", "--cafile", self.pki.ca, "--server-name", "example.org", "TIME"))
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            f"tinytcp-client: cannot connect to 127.0.0.1:{self.tls_port()}: "
            "TLS: the server's certificate is not for example.org (see --server-name)\n",
        )

    def test_untrusted_certificate_is_one_line_and_status_2_in_both_modes(self) -> None:
        for mode in ("text", "binary"):
            for trust in (("--cafile", self.pki.other_ca), ()):  # another CA; the system's store
                result = run_client(*self.client("--tls", *trust, "TIME", mode=mode))
                self.assertEqual(result.returncode, 2, result)
                self.assertEqual(result.stdout, "")
                self.assertIn("TLS: the server's certificate is not trusted", result.stderr)
                self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)

    def test_skipping_verification_is_loud(self) -> None:
        result = run_client(*self.client("--tls", "--insecure-skip-verify", "ECHO hi"))
        self.assertEqual((result.returncode, result.stdout), (0, "ECHO hi\n"))
        self.assertEqual(
            result.stderr, "tinytcp-client: warning: --insecure-skip-verify: the server's certificate is not checked\n"
        )

    def test_tls_to_a_plain_listener_and_plain_to_a_tls_listener(self) -> None:
        result = run_client("--port", str(self.server.text_port), "--tls", "--cafile", self.pki.ca, "TIME")
        self.assertEqual(result.returncode, 2)
        self.assertIn("the server did not answer in TLS", result.stderr)
        result = run_client(*self.client("--timeout", "1", "TIME"))
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            f"tinytcp-client: cannot connect to 127.0.0.1:{self.tls_port()}: no answer within 1 s; "
            "if it is a TLS listener, add --tls\n",
        )

    def test_bad_tls_files_are_one_line(self) -> None:
        missing = os.path.join(self.pki.folder, "missing.crt")
        for args, message in [
            (("--cafile", missing), f"cannot read CA file {missing}: No such file or directory"),
            (("--cafile", self.pki.server_key), f"no PEM certificate in CA file {self.pki.server_key}"),
            (
                ("--cafile", self.pki.ca, "--cert", self.pki.ca),
                f"no usable certificate and private key in {self.pki.ca}",
            ),
        ]:
            result = run_client(*self.client("--tls", *args, "TIME"))
            self.assertEqual((result.returncode, result.stderr), (2, f"tinytcp-client: {message}\n"))

    def test_usage_errors(self) -> None:
        for args, message in [
            (("--cafile", self.pki.ca), "--cafile needs --tls"),
            (("--tls", "--key", self.pki.server_key), "--key needs --cert"),
            (("--unix", "/tmp/x", "--endpoint", "tcp:localhost:1"), "give --unix or --endpoint, not both"),
            (("--unix", "/tmp/x", "--port", "1"), "--host and --port do not go with --unix or --endpoint"),
            (("--unix", "/tmp/x", "--tls"), "--tls with --unix or --endpoint needs --server-name"),
        ]:
            result = run_client(*args, "TIME")
            self.assertEqual(result.returncode, 2)
            self.assertIn(message, result.stderr)

    def test_twisted_endpoint_description(self) -> None:
        trust = os.path.join(self.pki.folder, "trust")  # Twisted loads every *.pem in it
        os.mkdir(trust)
        shutil.copy(self.pki.ca, os.path.join(trust, "ca.pem"))
        endpoint = f"tls:localhost:{self.tls_port()}:trustRoots={trust}"
        result = run_client("--endpoint", endpoint, "ECHO via tls:", "QUIT")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO via tls:\nBYE\n", ""))
        result = run_client("--endpoint", f"tcp:127.0.0.1:{self.server.text_port}", "ECHO plain")
        self.assertEqual((result.returncode, result.stdout), (0, "ECHO plain\n"))
        result = run_client("--endpoint", "bogus:1", "TIME")
        self.assertEqual(result.returncode, 2)
        self.assertIn("bad endpoint description 'bogus:1'", result.stderr)


class LibraryTests(TLSCase):
    async def check_library(self) -> None:
        settings = TLSSettings(server_name="localhost", cafile=self.pki.ca)
        for mode in ("text", "binary"):
            client = await connect(f"tcp:127.0.0.1:{self.tls_port(mode)}", mode, tls=settings, timeout=10)
            self.assertEqual(await client.request("ECHO hi"), Reply(Code.ECHO, b"hi"))
            self.assertEqual(await client.quit(), Reply(Code.QUIT, b"BYE"))
            await client.when_closed()
        wrong = TLSSettings(server_name="localhost", cafile=self.pki.other_ca)
        for mode in ("text", "binary"):
            with self.assertRaises(ConnectionClosed) as caught:
                await connect(f"tcp:127.0.0.1:{self.tls_port(mode)}", mode, tls=wrong, timeout=10)
            self.assertIn("certificate verify failed", str(caught.exception))
        with self.assertRaises(TLSConfigError):
            TLSSettings(cafile=self.pki.ca).creator()  # verifying needs a name

    def test_library(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_library())


class BackpressureOverTLSTests(TLSCase):
    async def check_backpressure(self) -> None:
        from twisted.internet import reactor, task

        settings = TLSSettings(server_name="localhost", cafile=self.pki.ca)
        client = await connect(f"tcp:127.0.0.1:{self.tls_port()}", tls=settings, timeout=30)
        # the client stops reading while it pipelines about 4 MB of replies' worth of requests:
        # the server's buffer fills, it stops reading, and once the client reads again every
        # reply arrives, in order
        client.transport.pauseProducing()
        lines = [f"ECHO {n} {'x' * 80}" for n in range(40_000)]
        replies = [client.request(line) for line in lines]
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(sum(reply.called for reply in replies), 0)
        client.transport.resumeProducing()
        got = await defer.gatherResults(replies)
        wrong = [n for n, reply in enumerate(got) if reply != Reply(Code.ECHO, lines[n][5:].encode())]
        self.assertEqual(wrong, [])
        await client.quit()
        self.assertNotIn("SLOW_CONSUMER", self.server.log)

    def test_backpressure(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.check_backpressure())


class LimitsOverTLSTests(TLSCase):
    """Twisted's TLS layer closes only once no producer is registered: every way the server
    hangs up must still end the TLS connection."""

    server_args = ("--idle-timeout", "1", "--max-line", "100", "--max-frame", "100")

    def test_quit_closes(self) -> None:
        with self.tls_socket() as sock:
            sock.sendall(b"ECHO a\nQUIT\nECHO never\n")
            self.assertEqual(read_until_closed(sock), BANNER + b"\r\nECHO a\r\nBYE\r\n")
        with self.tls_socket("binary") as sock:
            sock.sendall(encode_frame(3, b""))
            self.assertEqual(read_until_closed(sock), encode_frame(3, b"BYE"))

    def test_line_too_long_and_frame_too_large_close(self) -> None:
        with self.tls_socket() as sock:
            sock.sendall(b"ECHO " + b"x" * 200 + b"\n")
            self.assertEqual(read_until_closed(sock), BANNER + b"\r\nERROR LINE_TOO_LONG\r\n")
        with self.tls_socket("binary") as sock:
            sock.sendall(encode_frame(1, b"y" * 101))
            self.assertEqual(read_until_closed(sock), encode_frame(0xFF, b"FRAME_TOO_LARGE"))

    def test_idle_timeout_closes(self) -> None:
        with self.tls_socket() as sock:
            self.assertEqual(read_until_closed(sock), BANNER + b"\r\nERROR IDLE_TIMEOUT\r\n")

    def test_shutdown_says_bye_and_closes(self) -> None:
        with self.tls_socket() as text, self.tls_socket("binary") as binary:
            text.sendall(b"ECHO before\n")
            self.assertEqual(read_lines(text, 2), [BANNER, b"ECHO before"])
            binary.sendall(encode_frame(1, b"b"))
            self.assertEqual(recv_frames(binary, 1), [(1, b"b")])
            self.assertIn(self.server.stop(signal.SIGTERM), (-signal.SIGTERM, 0))
            self.assertEqual(read_until_closed(text), b"BYE\r\n")
            self.assertEqual(read_until_closed(binary), encode_frame(3, b"BYE"))


class MutualTLSTests(TLSCase):
    def setUp(self) -> None:
        self.pki = make_pki()
        self.addCleanup(shutil.rmtree, self.pki.folder, True)
        listener = ssl_listener(self.pki)
        self.server = RunningServer(
            "--port", listener, "--binary-port", listener, "--client-ca", self.pki.ca, "--require-client-cert"
        )
        self.addCleanup(self.server.stop)

    def test_client_certificate_from_the_ca_is_accepted(self) -> None:
        for mode in ("text", "binary"):
            result = run_client(
                *self.client("--tls", "--cafile", self.pki.ca, "--cert", self.pki.client, "ECHO mtls", mode=mode)
            )
            self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO mtls\n", ""))
        self.server.wait_for_log(r"127\.0\.0\.1:\d+: TLS client certificate CN=client-ann")

    def test_no_certificate_or_a_strangers_is_refused_in_one_line(self) -> None:
        for mode in ("text", "binary"):
            for cert in ((), ("--cert", self.pki.stranger)):
                result = run_client(*self.client("--tls", "--cafile", self.pki.ca, *cert, "ECHO hi", mode=mode))
                self.assertEqual((result.returncode, result.stdout), (2, ""), result)
                self.assertRegex(
                    result.stderr, r"^tinytcp-client: .*TLS: the server (requires|does not trust|rejected)"
                )
                self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)

    def test_python_ssl_with_the_client_certificate(self) -> None:
        with self.tls_socket(cert=self.pki.client) as sock:
            sock.sendall(b"QUIT\n")
            self.assertEqual(read_until_closed(sock), BANNER + b"\r\nBYE\r\n")


class OptionalClientCertificateTests(TLSCase):
    def setUp(self) -> None:
        self.pki = make_pki()
        self.addCleanup(shutil.rmtree, self.pki.folder, True)
        listener = ssl_listener(self.pki)
        self.server = RunningServer("--port", listener, "--client-ca", self.pki.ca, binary=False)
        self.addCleanup(self.server.stop)

    def test_a_client_may_present_none_but_not_a_bad_one(self) -> None:
        result = run_client(*self.client("--tls", "--cafile", self.pki.ca, "ECHO anonymous"))
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO anonymous\n", ""))
        result = run_client(*self.client("--tls", "--cafile", self.pki.ca, "--cert", self.pki.client, "ECHO ann"))
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO ann\n", ""))
        result = run_client(*self.client("--tls", "--cafile", self.pki.ca, "--cert", self.pki.stranger, "ECHO x"))
        self.assertEqual(result.returncode, 2, result)


class TwistedTLSListenerTests(unittest.TestCase):
    """Twisted's ``tls:`` listener: a folder of ``<hostname>.pem`` files, chosen by SNI."""

    timeout = 60

    def test_tls_listener(self) -> None:
        pki = make_pki()
        self.addCleanup(shutil.rmtree, pki.folder, True)
        pems = tempfile.mkdtemp(prefix="tinytcp-pems-")
        self.addCleanup(shutil.rmtree, pems, True)
        shutil.copy(pki.server, os.path.join(pems, "localhost.pem"))
        server = RunningServer("--port", f"tls:{pems}:port=0:interface=127.0.0.1", binary=False)
        self.addCleanup(server.stop)
        port = server.ports_of("text", 2)[1]
        result = run_client("--port", str(port), "--host", "localhost", "--tls", "--cafile", pki.ca, "ECHO sni", "QUIT")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO sni\nBYE\n", ""))

    def test_tls_listener_with_required_client_certificates(self) -> None:
        # the tls: listener swaps in a context per server name during the handshake: the
        # client certificate check must still apply
        pki = make_pki()
        self.addCleanup(shutil.rmtree, pki.folder, True)
        pems = tempfile.mkdtemp(prefix="tinytcp-pems-")
        self.addCleanup(shutil.rmtree, pems, True)
        shutil.copy(pki.server, os.path.join(pems, "localhost.pem"))
        listener = f"tls:{pems}:port=0:interface=127.0.0.1"
        server = RunningServer("--port", listener, "--client-ca", pki.ca, "--require-client-cert", binary=False)
        self.addCleanup(server.stop)
        tls = ("--port", str(server.ports_of("text", 2)[1]), "--host", "localhost", "--tls", "--cafile", pki.ca)
        result = run_client(*tls, "--cert", pki.client, "ECHO mtls over sni")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ECHO mtls over sni\n", ""))
        for cert in ((), ("--cert", pki.stranger)):
            result = run_client(*tls, *cert, "ECHO hi")
            self.assertEqual((result.returncode, result.stdout), (2, ""), result)
            self.assertIn("TLS: the server", result.stderr)


class WithoutTLSTests(unittest.SynchronousTestCase):
    """A server with no TLS listener, no --client-ca and no rediss:// does not load pyOpenSSL
    (tinytcp/lean.py: about 13 MiB of memory at rest); one with a TLS listener does."""

    @staticmethod
    def maps(server: RunningServer) -> str:
        with open(f"/proc/{server.process.pid}/maps", encoding="utf-8", errors="replace") as f:
            return f.read()

    def test_plain_listeners_leave_pyopenssl_unloaded(self) -> None:
        server = RunningServer()
        self.addCleanup(server.stop)
        with server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"ECHO plain\n")
            self.assertEqual(read_lines(sock, 1), [b"ECHO plain"])
        self.assertNotIn("cryptography", self.maps(server))

    def test_a_tls_listener_loads_it(self) -> None:
        server = RunningServer("--port", ssl_listener(make_pki()), binary=False)
        self.addCleanup(server.stop)
        self.assertIn("cryptography", self.maps(server))
