"""``--metrics-port``: the INFO figures in Prometheus' text format."""

from __future__ import annotations

import sys
import urllib.request
from unittest import mock

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import connect, feed, make_server
from tests.support import RunningServer, read_lines
from tinytcp.ops.metrics import StatusCollector, require_prometheus_client
from tinytcp.ops.startup import StartupError
from tinytcp.protocol.wire import encode_frame
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.text import TextProtocol


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class CollectorTests(SynchronousTestCase):
    def test_the_same_figures_as_info(self) -> None:
        server = make_server(max_line=10)
        text, _ = connect(TextProtocol, server)
        feed(text, b"ECHO hi\nTIME\nNICK ann\n")
        binary, _ = connect(BinaryProtocol, server)
        feed(binary, encode_frame(1, b"x") * 2 + encode_frame(0x7F, b""))
        long_line, _ = connect(TextProtocol, server)
        feed(long_line, b"x" * 20)
        long_line.connectionLost()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatusCollector(server))  # type: ignore[arg-type]
        got = samples(generate_latest(registry).decode())
        self.assertEqual(got[("tinytcp_requests_total", (("command", "echo"),))], 3)
        self.assertEqual(got[("tinytcp_requests_total", (("command", "time"),))], 1)
        self.assertEqual(got[("tinytcp_requests_total", (("command", "unknown"),))], 1)
        self.assertEqual(got[("tinytcp_errors_total", (("name", "unknown_command"),))], 1)
        self.assertEqual(got[("tinytcp_errors_total", (("name", "line_too_long"),))], 1)
        self.assertEqual(got[("tinytcp_connections_closed_by_limit_total", (("limit", "line_too_long"),))], 1)
        self.assertEqual(got[("tinytcp_connected_clients", (("mode", "text"),))], 1)
        self.assertEqual(got[("tinytcp_connected_clients", (("mode", "binary"),))], 1)
        self.assertEqual(got[("tinytcp_chat_nicks", ())], 1)
        self.assertEqual(got[("tinytcp_max_connections", ())], 10000)
        build = [key for key in got if key[0] == "tinytcp_build_info"]
        self.assertEqual(len(build), 1)
        self.assertIn(("version", "0.1"), build[0][1])

    def test_without_prometheus_client_says_what_to_install(self) -> None:
        with mock.patch.dict(sys.modules, {"prometheus_client": None}), self.assertRaises(StartupError) as caught:
            require_prometheus_client()
        self.assertEqual(
            str(caught.exception), "--metrics-port needs prometheus_client; pip install 'tinytcp[metrics]'"
        )


class MetricsEndToEndTests(SynchronousTestCase):
    def test_scrape_a_real_server(self) -> None:
        server = RunningServer("--metrics-port", "0")
        self.addCleanup(server.stop)
        match = server.wait_for_log(r"metrics \(Prometheus, GET /metrics\) listening on tcp:127\.0\.0\.1:(\d+)")
        with server.connect() as sock:
            read_lines(sock, 1)
            sock.sendall(b"REV abc\n")
            self.assertEqual(read_lines(sock, 1), [b"REVERSE cba"])
            with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/metrics", timeout=10) as response:
                self.assertEqual(response.status, 200)
                self.assertTrue(response.headers["content-type"].startswith("text/plain"))
                got = samples(response.read().decode())
        self.assertEqual(got[("tinytcp_requests_total", (("command", "reverse"),))], 1)
        self.assertEqual(got[("tinytcp_connected_clients", (("mode", "text"),))], 1)
        self.assertEqual(got[("tinytcp_received_bytes_total", ())], len(b"REV abc\n"))
        self.assertNotIn('"GET /metrics HTTP', server.log)  # no access log line per scrape
