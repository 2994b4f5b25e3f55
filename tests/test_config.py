"""``--config FILE`` and ``--check-config``: a TOML file of options, overridden by the command line."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from contextlib import redirect_stdout

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tests.support import RunningServer, read_lines, start_twistd
from tinytcp.ops import config
from tinytcp.server.state import Settings
from tinytcp.server.tap import Options, settings_from

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "contrib", "tinytcp.toml")


class ConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="tinytcp-config-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def write(self, text: str) -> str:
        path = os.path.join(self.workdir, "tinytcp.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def fails(self, *args: str) -> str:
        with self.assertRaises(SystemExit) as caught:
            self.parse(*args)
        return str(caught.exception.code)

    def test_every_option_from_the_file(self) -> None:
        path = self.write(
            'port = [41000, "tcp:41002:interface=127.0.0.1"]\nbinary-port = "none"\nbanner = "hi"\n'
            "max-line = 100\nmax-frame = 200\nmax-connections = 3\nmax-pending = 400\nidle-timeout = 1.5\n"
            'shutdown-grace = 0\nverbose = true\nlog-format = "text"\nmetrics-port = 0\n'
        )
        options = self.parse("--config", path)
        self.assertEqual(options["metrics-port"], "0")
        self.assertEqual(options["port"], ["41000", "tcp:41002:interface=127.0.0.1"])
        self.assertEqual(options["binary-port"], [])
        self.assertEqual(
            settings_from(options),
            Settings(
                banner="hi",
                max_line=100,
                max_frame=200,
                max_connections=3,
                max_pending=400,
                idle_timeout=1.5,
                shutdown_grace=0.0,
                verbose=True,
            ),
        )

    def test_the_command_line_overrides_the_file(self) -> None:
        path = self.write("port = [41000, 41001]\nmax-line = 100\nidle-timeout = 9\n")
        options = self.parse("--max-line=50", "-p", "42000", "--config", path)
        self.assertEqual(options["port"], ["42000"])
        self.assertEqual(options["max-line"], 50)
        self.assertEqual(options["idle-timeout"], 9.0)

    def test_unknown_key_names_file_line_and_key(self) -> None:
        path = self.write("# comment\n\nmax_line = 5\n")
        message = self.fails("--config", path)
        self.assertTrue(message.startswith(f"twistd tinytcp: {path}:3: unknown key 'max_line' (the keys are"), message)

    def test_bad_values_name_file_line_and_key(self) -> None:
        for text, expected in (
            ("\nidle-timeout = nan\n", ":2: idle-timeout: nan is not a number of seconds"),
            ("max-line = -1\n", ":1: max-line: -1 is not a whole number"),
            ("max-line = 1.5\n", ":1: max-line: 1.5 is not a whole number"),
            ('verbose = "yes"\n', ":1: verbose: 'yes' is not true or false"),
            ("port = [1.5]\n", ":1: port: 1.5 is not a port number or endpoint description"),
            ("port = []\n", ":1: port: the list is empty"),
            ("metrics-port = [9100]\n", ":1: metrics-port: [9100] is not a port number or endpoint description"),
            ('\n\nport = "tcp:0:bogus=1"\n', ":3: port 'tcp:0:bogus=1': tcp endpoints have no parameter 'bogus'"),
            ('"log-format" = "xml"\n', ":1: log-format: 'xml' is not one of text, json"),
        ):
            path = self.write(text)
            self.assertIn(f"{path}{expected}", self.fails("--config", path))

    def test_a_file_that_is_not_toml_or_not_there(self) -> None:
        path = self.write("port = [\n")
        self.assertIn(f"{path}: not valid TOML: ", self.fails("--config", path))
        self.assertIn(
            "--config: cannot read /nonexistent.toml: No such file or directory",
            self.fails("--config", "/nonexistent.toml"),
        )

    def test_check_config_says_so_and_exits_0(self) -> None:
        out = io.StringIO()
        with redirect_stdout(out), self.assertRaises(SystemExit) as caught:
            self.parse("--config", EXAMPLE, "--check-config")
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(out.getvalue(), f"twistd tinytcp: the configuration is valid ({EXAMPLE})\n")

    def test_the_shipped_example_holds_every_option_with_its_default(self) -> None:
        settings = config.load(EXAMPLE, Options().file_parsers(), frozenset({"port", "binary-port"}))
        # off by default, so shown as comments: metrics, the web page, and the options whose
        # default is "not set" (accounts, client-ca, redis)
        self.assertEqual(
            set(settings),
            set(Options().file_parsers())
            - {"metrics-port", "web-port", "web-origin", "accounts", "client-ca", "redis"},
        )
        defaults = Options()
        for key, setting in settings.items():
            if key not in ("port", "binary-port", "verbose"):
                self.assertEqual(setting.value, defaults[key], key)

    def test_key_lines(self) -> None:
        self.assertEqual(config.key_lines('a = 1\n  "b-c" = 2\n[t]\nd=3\n'), {"a": 1, "b-c": 2, "d": 4})

    def test_load_rejects_what_the_parsers_reject(self) -> None:
        path = self.write("x = 1\n")
        self.assertRaises(UsageError, config.load, path, {"y": str})


class ConfigEndToEndTests(SynchronousTestCase):
    def test_twistd_with_a_config_file(self) -> None:
        workdir = tempfile.mkdtemp(prefix="tinytcp-config-")
        self.addCleanup(shutil.rmtree, workdir, True)
        path = os.path.join(workdir, "tinytcp.toml")
        with open(path, "w") as f:
            f.write('banner = "configured"\nmax-line = 20\n')
        server = RunningServer("--config", path)
        self.addCleanup(server.stop)
        with server.connect() as sock:
            self.assertEqual(read_lines(sock, 1), [b"WELCOME configured"])
            sock.sendall(b"ECHO " + b"x" * 30 + b"\n")
            self.assertEqual(read_lines(sock, 1), [b"ERROR LINE_TOO_LONG"])
        with open(path, "a") as f:
            f.write("idle-timeout = inf\n")
        done = start_twistd("--config", path, "--check-config", workdir=workdir)
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr, f"twistd tinytcp: {path}:3: idle-timeout: inf is not a number of seconds (0 or more, finite)\n"
        )
