"""The log observer twistd tinytcp installs: formats, twistd's destinations, no port noise."""

from __future__ import annotations

import io
import json

from twisted.logger import LogLevel, PredicateResult, eventsFromJSONLogFile
from twisted.trial.unittest import SynchronousTestCase

from tinytcp.ops import logs


def legacy(text: str) -> dict[str, object]:
    """An event as twisted.python.log.msg publishes it."""
    return {"log_namespace": "log_legacy", "log_text": text, "log_format": "{log_text}", "log_level": LogLevel.info}


class PortNoiseTests(SynchronousTestCase):
    def test_twisteds_port_lines_are_dropped(self) -> None:
        for text in (
            "ConnectionFactory starting on 40000",
            "ConnectionFactory (TLS) starting on 40443",
            "QuietSite starting on 9100",
            "(TCP Port 40000 Closed)",
            "(UNIX Port /run/t.sock Closed)",
        ):
            self.assertEqual(logs.drop_port_noise(legacy(text)), PredicateResult.no, text)

    def test_everything_else_is_kept(self) -> None:
        for event in (
            legacy("something starting on a whim, then more"),
            {"log_namespace": "tinytcp", "log_text": "ConnectionFactory starting on 40000"},
            {"log_namespace": "tinytcp", "log_format": "text mode listening on {address}"},
        ):
            self.assertEqual(logs.drop_port_noise(event), PredicateResult.maybe)


class DestinationTests(SynchronousTestCase):
    def test_a_daemon_cannot_log_to_stdout(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            logs.open_log("-", daemon=True)
        self.assertEqual(caught.exception.code, "Daemons cannot log to stdout, exiting!")

    def test_foreground_without_a_file_logs_to_stdout(self) -> None:
        import sys

        self.assertIs(logs.open_log("", daemon=False), sys.stdout)
        self.assertIs(logs.open_log("-", daemon=False), sys.stdout)

    def test_json_is_one_object_a_line_with_the_rendered_text(self) -> None:
        out = io.StringIO()
        self.patch(logs, "open_log", lambda path, daemon: out)
        observer = logs.make_observer("json", "-", daemon=False)
        observer({"log_namespace": "tinytcp", "log_format": "hello {who}", "who": "ops", "log_level": LogLevel.info})
        observer(legacy("ConnectionFactory starting on 1"))
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(json.loads(lines[0])["text"], "hello ops")
        (event,) = eventsFromJSONLogFile(io.StringIO(out.getvalue()), recordSeparator="")
        self.assertEqual(event["who"], "ops")

    def test_twistds_logger_option_wins_over_ours(self) -> None:
        config = {"logger": "some.observer", "logfile": None, "nodaemon": True}
        logs.install(config, "text")
        self.assertEqual(config["logger"], "some.observer")
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, logs.install, config, "json")

    def test_install_names_the_factory_to_twistd(self) -> None:
        config: dict[str, object] = {"logger": None, "logfile": "-", "nodaemon": True}
        logs.install(config, "text")
        self.assertEqual(config["logger"], "tinytcp.ops.logs.twistd_observer")
