"""twistd options and service assembly."""

from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tinytcp.server.service import endpoint_description, make_service
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

    def test_bad_values_are_usage_errors(self) -> None:
        for args in (
            ["--port", "nonsense:1"],
            ["--max-line", "0"],
            ["--max-frame", "big"],
            ["--shutdown-grace", "-1"],
            ["--idle-timeout", "-5"],
            ["--max-connections", "0"],
            ["--binary-port", "none", "--binary-port", "5"],
        ):
            self.assertRaises(usage.UsageError, parse, *args)


class ServiceTests(SynchronousTestCase):
    def test_listens_where_asked(self) -> None:
        reactor = MemoryReactorClock()
        service = make_service(Settings(), ["40000", "tcp:40002:interface=0.0.0.0"], ["40001"], reactor=reactor)
        service.startService()
        listening = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        self.assertEqual(listening, [(40000, "127.0.0.1"), (40002, "0.0.0.0"), (40001, "127.0.0.1")])
        self.successResultOf(service.stopService())

    def test_make_service_from_options(self) -> None:
        self.assertTrue(IService.providedBy(makeService(parse("--binary-port", "none"))))


class ClientCertificateOptionTests(SynchronousTestCase):
    def test_client_ca_is_loaded_at_startup(self) -> None:
        import shutil

        from tests.certs import make_pki

        pki = make_pki()
        self.addCleanup(shutil.rmtree, pki.folder, True)
        settings = settings_from(parse("--client-ca", pki.ca, "--require-client-cert"))
        self.assertEqual((settings.client_ca, settings.require_client_cert), (pki.ca, True))
        with self.assertRaises(usage.UsageError) as caught:
            parse("--client-ca", pki.server_key)
        self.assertIn("no PEM certificate", str(caught.exception))
        with self.assertRaises(usage.UsageError) as caught:
            parse("--client-ca", pki.folder + "/missing")
        self.assertIn("No such file", str(caught.exception))
        with self.assertRaises(usage.UsageError) as caught:
            parse("--require-client-cert")
        self.assertEqual(str(caught.exception), "--require-client-cert needs --client-ca")


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
        with self.assertRaises(usage.UsageError):
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
            with self.assertRaises(usage.UsageError):
                parse("--bcrypt-rounds", rounds)

    def test_unix_sockets_get_mode_660_unless_given(self) -> None:
        self.assertEqual(endpoint_description("unix:/tmp/t.sock"), "unix:/tmp/t.sock:mode=660")
        self.assertEqual(endpoint_description("unix:/tmp/t.sock:mode=600"), "unix:/tmp/t.sock:mode=600")
