"""twistd options and service assembly."""

import io
import os
import tempfile
from contextlib import redirect_stdout

from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tinytcp import __version__
from tinytcp.ops.startup import StartupError, endpoint_problem, seconds, whole_number
from tinytcp.server.service import describe_host, endpoint_description, make_service
from tinytcp.server.state import DEFAULT_BANNER, Settings
from tinytcp.server.tap import Options, makeService, settings_from


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["port"], ["40000"])
        self.assertEqual(options["binary-port"], ["40001"])
        self.assertEqual(settings_from(options), Settings())
        self.assertEqual(options["banner"], DEFAULT_BANNER)

    def test_every_option_in_help_with_its_default(self) -> None:
        text = str(Options())
        for option, default in [
            ("--port", "40000"),
            ("--binary-port", "40001"),
            ("--banner", DEFAULT_BANNER),
            ("--max-line", "65536"),
            ("--max-frame", "1048576"),
            ("--shutdown-grace", "5.0"),
            ("--max-connections", "10000"),
            ("--idle-timeout", "300.0"),
        ]:
            self.assertIn(option, text)
            self.assertIn(f"[default: {default}]", " ".join(text.split()))
        self.assertIn("--verbose", text)

    def test_repeated_ports_and_descriptions(self) -> None:
        options = parse("--port", "41000", "--port", "tcp6:41000:interface=\\:\\:", "--binary-port", "none")
        self.assertEqual(options["port"], ["41000", "tcp6:41000:interface=\\:\\:"])
        self.assertEqual(options["binary-port"], [])

    def test_bare_number_is_loopback_only(self) -> None:
        self.assertEqual(endpoint_description("40000"), "tcp:40000:interface=127.0.0.1:backlog=1024")
        self.assertEqual(endpoint_description("tcp:40000"), "tcp:40000")

    def test_bad_values_are_one_line_naming_the_option_and_value(self) -> None:
        for args, expected in (
            (["--port", "nonsense:1"], "--port 'nonsense:1': unknown endpoint type 'nonsense'"),
            (["--port", "99999"], "--port: '99999' is not a port number"),
            (["--port", "tcp:1:bogus=1"], "--port 'tcp:1:bogus=1': tcp endpoints have no parameter 'bogus'"),
            (["--port", "tcp6:40000:interface=::1"], "escape the colons"),
            (["--max-line", "0"], "--max-line: '0' is not a whole number 1 or more"),
            (["--max-frame", "big"], "--max-frame: 'big' is not a whole number from 1 to 4294967295"),
            (["--max-frame", "4294967296"], "--max-frame: '4294967296'"),
            (["--shutdown-grace", "-1"], "--shutdown-grace: '-1' is not a number of seconds"),
            (["--shutdown-grace", "nan"], "--shutdown-grace: 'nan'"),
            (["--idle-timeout", "inf"], "--idle-timeout: 'inf'"),
            (["--idle-timeout", "-5"], "--idle-timeout: '-5'"),
            (["--max-connections", "0"], "--max-connections: '0'"),
            (["--max-pending", "1e6"], "--max-pending: '1e6'"),
            (["--log-format", "xml"], "--log-format: 'xml' is not one of text, json"),
            (["--banner", "two\r\nlines"], "--banner: 'two\\r\\nlines' is not one line of printable text"),
            (["--binary-port", "none", "--binary-port", "5"], "--binary-port none cannot be combined"),
            (["--bogus"], "option --bogus not recognized (twistd tinytcp --help lists them)"),
        ):
            with self.assertRaises(SystemExit) as caught:
                parse(*args)
            message = str(caught.exception.code)
            self.assertTrue(message.startswith("twistd tinytcp: "), message)
            self.assertIn(expected, message)
            self.assertNotIn("\n", message)

    def test_tls_mistakes_are_one_line(self) -> None:
        import twisted.test

        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
            f.write("not a key\n")
        not_pem = f.name
        self.addCleanup(os.remove, not_pem)
        for port, expected in (
            ("ssl:0", "ssl: needs privateKey=FILE"),
            ("ssl:0:privateKey=/nonexistent/key.pem", "no such file: /nonexistent/key.pem"),
            (f"ssl:0:privateKey={pem}:certKey=/nonexistent/cert.pem", "no such file: /nonexistent/cert.pem"),
            (f"ssl:0:privateKey={not_pem}", "privateKey/certKey is not a PEM key and certificate"),
        ):
            with self.assertRaises(SystemExit) as caught:
                parse("--port", port)
            self.assertIn(f"--port {port!r}: {expected}", str(caught.exception.code))

    def test_a_missing_tls_module_names_the_extra_to_install(self) -> None:
        self.assertEqual(
            endpoint_problem("ssl:40443:privateKey=k.pem", ModuleNotFoundError("No module named 'OpenSSL'")),
            "TLS support is not installed; pip install 'tinytcp[tls]' (No module named 'OpenSSL')",
        )

    def test_systemd_without_sockets_says_how_to_pass_them(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            parse("--port", "systemd:domain=INET:index=0")
        self.assertIn("systemd passed no such socket", str(caught.exception.code))

    def test_version(self) -> None:
        import twisted

        out = io.StringIO()
        with redirect_stdout(out), self.assertRaises(SystemExit) as caught:
            parse("--version")
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(out.getvalue(), f"tinytcp {__version__} (Twisted {twisted.__version__})\n")

    def test_numbers_from_a_config_file_keep_their_type(self) -> None:
        self.assertEqual(whole_number("max-line")(100), 100)
        self.assertEqual(seconds("idle-timeout")(2), 2.0)
        self.assertRaises(usage.UsageError, whole_number("max-line"), True)
        self.assertRaises(usage.UsageError, seconds("idle-timeout"), float("nan"))


class ServiceTests(SynchronousTestCase):
    def test_listens_where_asked(self) -> None:
        reactor = MemoryReactorClock()
        service = make_service(Settings(), ["40000", "tcp:40002:interface=0.0.0.0"], ["40001"], reactor=reactor)
        service.startService()
        listening = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        self.assertEqual(listening, [(40000, "127.0.0.1"), (40002, "0.0.0.0"), (40001, "127.0.0.1")])
        self.successResultOf(service.stopService())


    def test_a_port_that_cannot_be_bound_is_a_startup_error_naming_the_option(self) -> None:
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            service = make_service(Settings(), [str(port)], [])
            with self.assertRaises(StartupError) as caught:
                service.listen()
        self.assertEqual(
            str(caught.exception),
            f"--port {port}: cannot listen for text clients on "
            f"tcp:{port}:interface=127.0.0.1:backlog=1024: address already in use",
        )

    def test_listening_addresses_as_an_operator_reads_them(self) -> None:
        from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

        self.assertEqual(describe_host(IPv4Address("TCP", "127.0.0.1", 40000)), "tcp:127.0.0.1:40000")
        self.assertEqual(describe_host(IPv6Address("TCP", "::1", 40000), "tcp6:40000"), "tcp:[::1]:40000")
        self.assertEqual(describe_host(IPv4Address("TCP", "127.0.0.1", 443), "ssl:443:k=v"), "ssl:127.0.0.1:443")
        self.assertEqual(describe_host(UNIXAddress(b"/run/t.sock")), "unix:/run/t.sock")


class MakeServiceTests(TestCase):
    def test_twistds_service_is_already_listening(self) -> None:
        service = makeService(parse("--port", "tcp:0:interface=127.0.0.1", "--binary-port", "none"))
        self.assertTrue(IService.providedBy(service))
        (listener,) = service
        self.assertIsNotNone(listener.port)
        return service.stopService()


class WebOptionsTests(SynchronousTestCase):
    def test_older_twisted_is_a_clear_startup_error(self) -> None:
        from twisted.python.versions import Version

        import twisted

        self.patch(twisted, "version", Version("Twisted", 25, 5, 0))
        self.patch(twisted, "__version__", "25.5.0")
        with self.assertRaises(SystemExit) as caught:
            parse("--web-port", "8080")
        self.assertIn("--web-port: needs Twisted 26.10 or later (this is 25.5.0)", str(caught.exception))
        self.assertEqual(parse("--port", "40000")["web-port"], [])

    def test_web_port_is_off_by_default(self) -> None:
        options = parse()
        self.assertEqual((options["web-port"], options["web-origin"]), ([], []))
        self.assertIn("--web-port", str(Options()))
        self.assertIn("--web-origin", str(Options()))

    def test_web_ports_and_origins_repeat(self) -> None:
        options = parse("--web-port", "8080", "--web-port", "unix:/tmp/web", "--web-origin", "https://a.example")
        self.assertEqual(options["web-port"], ["8080", "unix:/tmp/web"])
        self.assertEqual(options["web-origin"], ["https://a.example"])
        self.assertEqual(parse("--web-origin", "*")["web-origin"], ["*"])

    def test_bad_web_values_are_usage_errors(self) -> None:
        for args in (["--web-port", "nonsense:1"], ["--web-origin", "chat.example"], ["--web-origin", "ftp://x"]):
            with self.assertRaises(SystemExit) as caught:
                parse(*args)
            self.assertIn(args[0], str(caught.exception))

    def test_web_port_listens_on_loopback_for_a_bare_number(self) -> None:
        reactor = MemoryReactorClock()
        service = make_service(Settings(), ["40000"], [], reactor=reactor, web_ports=["40080"])
        service.startService()
        listening = [(port, type(factory).__name__, interface) for port, factory, _, interface in reactor.tcpServers]
        self.assertEqual(listening, [(40000, "ConnectionFactory", "127.0.0.1"), (40080, "Site", "127.0.0.1")])
        self.successResultOf(service.stopService())


class ClientCertificateOptionTests(SynchronousTestCase):
    def test_client_ca_is_loaded_at_startup(self) -> None:
        import shutil

        from tests.certs import make_pki

        pki = make_pki()
        self.addCleanup(shutil.rmtree, pki.folder, True)
        settings = settings_from(parse("--client-ca", pki.ca, "--require-client-cert"))
        self.assertEqual((settings.client_ca, settings.require_client_cert), (pki.ca, True))
        with self.assertRaises(SystemExit) as caught:
            parse("--client-ca", pki.server_key)
        self.assertIn("no PEM certificate", str(caught.exception))
        with self.assertRaises(SystemExit) as caught:
            parse("--client-ca", pki.folder + "/missing")
        self.assertIn("No such file", str(caught.exception))
        with self.assertRaises(SystemExit) as caught:
            parse("--require-client-cert")
        self.assertEqual(str(caught.exception), "twistd tinytcp: --require-client-cert needs --client-ca")


class AccountOptionTests(SynchronousTestCase):
    def test_accounts_are_off_by_default_and_protected_mode_on(self) -> None:
        settings = settings_from(parse())
        self.assertEqual((settings.accounts, settings.require_login, settings.protected_mode), (None, False, True))
        self.assertFalse(settings_from(parse("--no-protected-mode")).protected_mode)

    def test_require_login_turns_accounts_on_with_registration_off(self) -> None:
        settings = settings_from(parse("--require-login"))
        self.assertEqual((settings.accounts, settings.allow_register), ("accounts.sqlite3", False))
        settings = settings_from(parse("--require-login", "--allow-register", "--accounts", "/tmp/a.db"))
        self.assertEqual((settings.accounts, settings.allow_register), ("/tmp/a.db", True))
        self.assertTrue(settings_from(parse("--accounts", "x.db")).allow_register)

    def test_auth_checker_replaces_the_database(self) -> None:
        options = parse("--auth", "file:/nonexistent/passwd", "--require-login")
        self.assertEqual(len(options["credCheckers"]), 1)
        self.assertIsNone(settings_from(options).accounts)
        with self.assertRaises(SystemExit):
            parse("--auth", "file:/nonexistent/passwd", "--accounts", "x.db")

    def test_limits_and_cost(self) -> None:
        settings = settings_from(
            parse("--login-failures", "3", "--peer-login-failures", "9", "--login-window", "60", "--bcrypt-rounds", "4")
        )
        self.assertEqual(
            (settings.login_failures, settings.peer_login_failures, settings.login_window, settings.bcrypt_rounds),
            (3, 9, 60.0, 4),
        )
        for rounds in ("3", "32", "x"):
            with self.assertRaises(SystemExit):
                parse("--bcrypt-rounds", rounds)

    def test_unix_sockets_get_mode_660_unless_given(self) -> None:
        self.assertEqual(endpoint_description("unix:/tmp/t.sock"), "unix:/tmp/t.sock:mode=660")
        self.assertEqual(endpoint_description("unix:/tmp/t.sock:mode=600"), "unix:/tmp/t.sock:mode=600")


class WorkersOptionsTests(SynchronousTestCase):
    def test_one_worker_by_default_and_auto_is_one_per_core(self) -> None:
        self.assertEqual(parse()["workers"], 1)
        self.assertEqual(parse()["worker-sockets"], "reuseport")
        self.assertEqual(parse("--workers", "auto", "--separate-rooms")["workers"], os.cpu_count() or 1)
        self.assertEqual(parse("--workers", "3", "--separate-rooms")["workers"], 3)
        self.assertIn("--workers", str(Options()))

    def test_bad_workers_values_are_one_line(self) -> None:
        for args, expected in (
            (["--workers", "0"], "--workers: '0' is not a whole number 1 or more, or auto"),
            (["--workers", "two"], "--workers: 'two' is not a whole number 1 or more, or auto"),
            (["--worker-sockets", "magic"], "--worker-sockets: 'magic' is not one of reuseport, shared"),
            (["--workers", "2"], "--workers 2: each worker would have its own chat room; add --redis URL"),
            (["--workers", "2", "--separate-rooms", "--metrics-port", "9100"], "--metrics-port is not supported"),
        ):
            with self.assertRaises(SystemExit) as caught:
                parse(*args)
            message = str(caught.exception.code)
            self.assertIn(expected, message)
            self.assertNotIn("\n", message)

    def test_workers_from_a_config_file(self) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('workers = "auto"\nworker-sockets = "shared"\nseparate-rooms = true\n')
        self.addCleanup(os.remove, f.name)
        options = parse("--config", f.name)
        self.assertEqual(
            (options["workers"], options["worker-sockets"], options["separate-rooms"]),
            (os.cpu_count() or 1, "shared", True),
        )

    def test_one_worker_is_the_single_process_of_before(self) -> None:
        service = makeService(parse("--port", "tcp:0:interface=127.0.0.1", "--binary-port", "none", "--workers", "1"))
        self.addCleanup(service.stopService)
        self.assertEqual((service.server.worker, service.server.workers), (1, 1))
