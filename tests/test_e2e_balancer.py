"""HAProxy (contrib/haproxy/tinytcp.cfg, as shipped) in front of two real nodes sharing one room."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from twisted.trial.unittest import SynchronousTestCase

from tests.redis_server import RunningRedis, redis_server_path
from tests.support import RunningServer, free_port
from tests.test_e2e import recv_frames
from tests.test_e2e_cluster import Lines, eventually
from tinytcp.protocol.reply import Code
from tinytcp.protocol.wire import encode_frame

CONFIG = os.path.join(os.path.dirname(__file__), "..", "contrib", "haproxy", "tinytcp.cfg")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
MISSING = None
if HAPROXY is None:
    MISSING = "haproxy not installed (apt-get install haproxy)"
elif redis_server_path() is None:
    MISSING = "redis-server not installed (apt-get install redis-server)"
if MISSING and os.environ.get("TINYTCP_REQUIRE_REDIS") == "1":
    raise RuntimeError(f"TINYTCP_REQUIRE_REDIS=1 but {MISSING}")

#: the node addresses in the shipped config, and the loopback addresses the test gives them
NODES = {"10.0.0.11": "127.0.0.11", "10.0.0.12": "127.0.0.12"}


def render(text_port: int, binary_port: int, front_text: int, front_binary: int, interval: str = "200ms") -> str:
    """The shipped config with its addresses moved to loopback and a faster health check."""
    with open(CONFIG, encoding="utf-8") as f:
        config = f.read()
    config = config.replace("bind 0.0.0.0:40000", f"bind 127.0.0.1:{front_text}")
    config = config.replace("bind 0.0.0.0:40001", f"bind 127.0.0.1:{front_binary}")
    for shipped, loopback in NODES.items():
        config = config.replace(f"{shipped}:40000", f"{loopback}:{text_port}")
        config = config.replace(f"{shipped}:40001", f"{loopback}:{binary_port}")
    config = config.replace("connect port 40000", f"connect port {text_port}")
    config = config.replace("check inter 2s", f"check inter {interval}")
    settings = "\n".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))
    if re.search(r"10\.0\.0\.|:4000[01]\b|port 4000[01]\b", settings):
        raise AssertionError("the shipped config changed shape; update render():\n" + config)
    return config


@unittest.skipIf(MISSING is not None, MISSING or "")
class BalancerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RunningRedis()
        self.addCleanup(self.redis.close)
        text_port, binary_port = free_port(), free_port()
        self.nodes = []
        for loopback in NODES.values():
            node = RunningServer(
                "--redis",
                self.redis.url,
                "--redis-ttl",
                "3",
                port=f"haproxy:tcp:{text_port}:interface={loopback}",
                binary_port=f"haproxy:tcp:{binary_port}:interface={loopback}",
            )
            self.addCleanup(node.stop)
            node.wait_for_log("chat shared through Redis")
            self.nodes.append(node)
        self.front_text, self.front_binary = free_port(), free_port()
        folder = tempfile.mkdtemp(prefix="tinytcp-haproxy-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "haproxy.cfg")
        with open(config, "w", encoding="utf-8") as f:
            f.write(render(text_port, binary_port, self.front_text, self.front_binary))
        self.haproxy_log = os.path.join(folder, "haproxy.log")
        with open(self.haproxy_log, "wb") as log:
            self.haproxy = subprocess.Popen(
                [HAPROXY, "-db", "-f", config], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.addCleanup(self.stop_haproxy)
        # both nodes have passed a health check (a connection that reads WELCOME)
        for node in self.nodes:
            node.wait_for_log(r"127\.0\.0\.1:\d+ disconnected after")

    def stop_haproxy(self) -> None:
        if self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(10)

    def client(self) -> Lines:
        # from 127.0.0.5, so that the nodes' logs tell the client's address from HAProxy's
        sock = socket.create_connection(("127.0.0.1", self.front_text), timeout=10, source_address=("127.0.0.5", 0))
        self.addCleanup(sock.close)
        client = Lines(sock)
        self.assertTrue(client.line().startswith(b"WELCOME"))
        return client

    def test_clients_spread_over_both_nodes_and_chat_as_one_room(self) -> None:
        clients = [self.client() for _ in range(6)]
        pids = {re.search(rb"pid:(\d+)", c.ask(b"INFO server")).group(1) for c in clients}  # type: ignore[union-attr]
        self.assertEqual(len(pids), 2, "leastconn put every client on one node")
        # the nodes see each client's own address through the PROXY header, not HAProxy's
        for node in self.nodes:
            node.wait_for_log(r"127\.0\.0\.5:\d+ connected \(text\)")
        for number, client in enumerate(clients):
            self.assertEqual(client.ask(b"NICK c%d" % number), b"NICK c%d" % number)
        self.assertRegex(clients[0].ask(b"SAY through the balancer"), rb"SAID \d+")
        for client in clients[1:]:
            client.wait_for(b"MSG c0 through the balancer")
        # binary clients go through the other frontend
        with socket.create_connection(("127.0.0.1", self.front_binary), timeout=10) as binary:
            binary.sendall(encode_frame(Code.ECHO, b"framed"))
            self.assertEqual(recv_frames(binary, 1), [(Code.ECHO, b"framed")])

    def test_a_node_that_stops_is_taken_out_and_new_clients_reach_the_other(self) -> None:
        first = self.client()
        self.assertEqual(first.ask(b"NICK early"), b"NICK early")
        stopping, staying = self.nodes
        stopping.stop()
        deadline = time.monotonic() + 10
        served = 0
        while served < 5 and time.monotonic() < deadline:
            try:
                client = self.client()
            except (AssertionError, OSError):
                continue  # HAProxy has not marked the node down yet
            self.assertEqual(client.ask(b"ECHO alive"), b"ECHO alive")
            served += 1
        self.assertEqual(served, 5)
        self.assertTrue(eventually(lambda: self.client().ask(b"INFO server").count(b"pid:%d" % staying.process.pid)))
