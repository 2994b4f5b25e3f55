"""``--workers``: the real ``twistd tinytcp`` as a supervisor of worker processes, and its parts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import make_pki
from tests.support import RunningServer, free_port, read_lines, read_until_closed, start_twistd, twistd_path
from tests.test_e2e_ops import _kill
from tests.test_systemd import connect as connect_activated
from tinytcp.cluster import supervisor as supervisor_module
from tinytcp.cluster.listeners import bind_tcp
from tinytcp.cluster.supervisor import Supervisor, describe_end, worker_arguments
from tinytcp.cluster.worker import ENV, WorkerInfo, from_environ
from tinytcp.protocol.wire import encode_frame

STARTED = re.compile(r"worker (\d+) \[(\d+)\] started")


def info(sock: socket.socket) -> dict[str, str]:
    """INFO server on an open text connection whose greeting was read."""
    sock.sendall(b"INFO server\n")
    (line,) = read_lines(sock, 1)
    return dict(field.split(":", 1) for field in line.decode().split()[1:])


def alive(pid: int) -> bool:
    """Whether ``pid`` is still a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def worker_pids(server: RunningServer) -> dict[int, int]:
    """The latest pid of each worker, from the supervisor's "started" lines."""
    server.wait_for_log(r"worker 2 \[\d+\] started")
    return {int(index): int(pid) for index, pid in STARTED.findall(server.log)}


def one_client_per_worker(port: int, limit: int = 400) -> dict[str, socket.socket]:
    """Open connections until each of the two workers holds one; close the others."""
    held: dict[str, socket.socket] = {}
    for _ in range(limit):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.settimeout(10)
        read_lines(sock, 1)
        worker = info(sock)["worker"]
        if worker in held:
            sock.close()
        else:
            held[worker] = sock
        if len(held) == 2:
            return held
    raise AssertionError(f"{limit} connections all landed on worker {list(held)}")


class WorkersEndToEndTests(SynchronousTestCase):
    def start(self, *args: str) -> RunningServer:
        server = RunningServer("--workers", "2", "--separate-rooms", *args)
        self.addCleanup(server.stop)
        return server

    def check_both_workers_serve(self, *args: str) -> None:
        server = self.start(*args)
        held = one_client_per_worker(server.text_port)
        pids = set()
        for worker, sock in held.items():
            fields = info(sock)
            self.assertEqual((fields["worker"], fields["workers"]), (worker, "2"))
            pids.add(int(fields["pid"]))
            # bytes are counted by tinytcp's own transport, which adopted listeners install too
            sock.sendall(b"INFO stats\n")
            (stats,) = read_lines(sock, 1)
            self.assertRegex(stats, rb" bytes_in:[1-9]\d* ")
            sock.close()
        self.assertEqual(pids, set(worker_pids(server).values()))
        self.assertNotIn(server.process.pid, pids)
        with server.connect("binary") as binary:
            binary.sendall(encode_frame(1, b"through a worker"))
            self.assertEqual(binary.recv(100), encode_frame(1, b"through a worker"))
        # the parent logs each listener once; the workers announce nothing of their own
        self.assertEqual(len(re.findall(r"text mode listening on", server.log)), 1)

    def test_clients_land_on_both_workers_reuseport(self) -> None:
        self.check_both_workers_serve()

    def test_clients_land_on_both_workers_shared(self) -> None:
        self.check_both_workers_serve("--worker-sockets", "shared")

    def test_a_killed_worker_is_logged_and_restarted_and_the_port_keeps_serving(self) -> None:
        server = self.start()
        old = worker_pids(server)[1]
        os.kill(old, signal.SIGKILL)
        died = rf"worker 1 \[{old}\] died \(signal 9 \(SIGKILL\)\) after [\d.]+ s; restarting it in 0\.5 s"
        server.wait_for_log(died)
        # clients that arrive meanwhile (some queued on the dead worker's socket) are all served
        waiting = [socket.create_connection(("127.0.0.1", server.text_port), timeout=10) for _ in range(20)]
        for sock in waiting:
            self.addCleanup(sock.close)
            sock.settimeout(10)
            self.assertTrue(read_lines(sock, 1)[0].startswith(b"WELCOME"))
        wait_until(lambda: worker_pids(server)[1] != old, what="worker 1 to restart")
        new = worker_pids(server)[1]
        held = one_client_per_worker(server.text_port)
        self.assertEqual(int(info(held["1"])["pid"]), new)
        for sock in held.values():
            sock.close()
        self.assertFalse(alive(old))

    def test_sigterm_drains_every_worker_and_leaves_no_process(self) -> None:
        self.check_clean_stop(signal.SIGTERM, (0, -signal.SIGTERM))

    def test_sigint_drains_every_worker_and_leaves_no_process(self) -> None:
        self.check_clean_stop(signal.SIGINT, (0, -signal.SIGINT))

    def test_sighup_drains_every_worker_with_status_0(self) -> None:
        self.check_clean_stop(signal.SIGHUP, (0,))

    def check_clean_stop(self, sig: int, statuses: tuple[int, ...]) -> None:
        """Every request answered, BYE to every client of every worker, no worker left."""
        server = self.start()
        held = one_client_per_worker(server.text_port)
        binary = server.connect("binary")
        self.addCleanup(binary.close)
        for sock in held.values():
            self.addCleanup(sock.close)
            sock.sendall(b"ECHO before\n")
            self.assertEqual(read_lines(sock, 1), [b"ECHO before"])
        binary.sendall(encode_frame(1, b"before"))
        self.assertEqual(binary.recv(100), encode_frame(1, b"before"))
        pids = list(worker_pids(server).values())
        status = server.stop(sig)
        for sock in held.values():
            self.assertEqual(read_until_closed(sock), b"BYE\r\n")
        self.assertEqual(read_until_closed(binary), b"\x03\x00\x00\x00\x03BYE")
        self.assertIn(status, statuses)
        self.assertNotIn("Traceback", server.log)
        self.assertEqual(len(re.findall(r"worker \d \[\d+\] stopped \(signal 15 \(SIGTERM\)\)", server.log)), 2)
        self.assertIn("Server Shut Down.", server.log)
        self.assertEqual([pid for pid in pids if alive(pid)], [])

    def test_a_killed_parent_leaves_no_worker_behind(self) -> None:
        server = self.start()
        held = one_client_per_worker(server.text_port)
        pids = list(worker_pids(server).values())
        server.process.kill()
        for sock in held.values():
            self.addCleanup(sock.close)
            self.assertEqual(read_until_closed(sock), b"BYE\r\n")
        wait_until(lambda: not any(alive(pid) for pid in pids), what="the workers to exit")

    def test_tls_and_unix_listeners_are_served_by_the_workers(self) -> None:
        import twisted.test

        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        folder = tempfile.mkdtemp(prefix="tinytcp-workers-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "text.sock")
        tls = f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}"
        server = self.start("--port", tls, "--port", f"unix:{path}")
        tls_port = server.ports_of("text", 2)[1]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.assertEqual(self.tls_workers(tls_port, context), {"1", "2"})
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            read_lines(sock, 1)
            self.assertEqual(info(sock)["workers"], "2")
        server.stop()
        self.assertFalse(os.path.exists(path))

    def tls_workers(self, port: int, context: ssl.SSLContext, limit: int = 100) -> set[str]:
        """Connect over TLS until both workers have answered INFO; the workers seen."""
        workers = set()
        for _ in range(limit):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                self.assertTrue(read_lines(sock, 1)[0].startswith(b"WELCOME"))
                workers.add(info(sock)["worker"])
            if len(workers) == 2:
                break
        return workers

    def check_mutual_tls(self, listener: str, ca: str, client: str) -> None:
        """Both workers serve ``listener`` to a client with a certificate, and refuse one without."""
        server = self.start("--port", listener, "--client-ca", ca, "--require-client-cert")
        port = server.ports_of("text", 2)[1]
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(client)
        self.assertEqual(self.tls_workers(port, context), {"1", "2"})
        refused = ssl.create_default_context(cafile=ca)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            with refused.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"ECHO no certificate\n")
                read_lines(sock, 2)
        server.wait_for_log(r"worker \d \[\d+\] 127\.0\.0\.1:\d+: TLS client certificate CN=client-ann")

    def test_mutual_tls_on_an_ssl_listener(self) -> None:
        pki = make_pki()
        self.addCleanup(shutil.rmtree, pki.folder, True)
        listener = f"ssl:0:interface=127.0.0.1:privateKey={pki.server_key}:certKey={pki.server_cert}"
        self.check_mutual_tls(listener, pki.ca, pki.client)

    def test_mutual_tls_on_a_tls_folder_listener(self) -> None:
        # Twisted's tls: endpoint (a folder of certificates chosen by SNI), Twisted 25 and later
        pki = make_pki()
        self.addCleanup(shutil.rmtree, pki.folder, True)
        pems = tempfile.mkdtemp(prefix="tinytcp-pems-")
        self.addCleanup(shutil.rmtree, pems, True)
        shutil.copy(pki.server, os.path.join(pems, "localhost.pem"))
        self.check_mutual_tls(f"tls:{pems}:port=0:interface=127.0.0.1", pki.ca, pki.client)

    def test_separate_rooms_are_one_room_per_worker(self) -> None:
        server = self.start()
        held = one_client_per_worker(server.text_port)
        for sock in held.values():
            self.addCleanup(sock.close)
            sock.sendall(b"NICK ann\nWHO\n")
            self.assertEqual(read_lines(sock, 2), [b"NICK ann", b"WHO ann"])

    def test_tcp6_listeners(self) -> None:
        server = self.start("--port", "tcp6:0:interface=\\:\\:1")
        port = int(server.wait_for_log(r"text mode listening on tcp:\[::1\]:(\d+)").group(1))
        workers = set()
        for _ in range(100):
            with socket.create_connection(("::1", port), timeout=10) as sock:
                sock.settimeout(10)
                read_lines(sock, 1)
                workers.add(info(sock)["worker"])
            if len(workers) == 2:
                break
        self.assertEqual(workers, {"1", "2"})

    def test_the_web_page_is_served_by_the_workers(self) -> None:
        server = self.start("--web-port", "0")
        port = server.ports_of("web", 1)[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            self.assertEqual(page.status, 200)
            self.assertIn(b"tinytcp", page.read())


class WorkersStartupErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="tinytcp-workers-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def refused(self, *args: str) -> str:
        done = start_twistd(*args, workdir=self.workdir)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertEqual(done.stdout, "")
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        return lines[0]

    def test_a_port_in_use_is_one_line_for_either_way_of_sharing(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            for way in ("reuseport", "shared"):
                line = self.refused("--port", str(port), "--workers", "2", "--separate-rooms", "--worker-sockets", way)
                self.assertEqual(
                    line,
                    f"twistd tinytcp: --port {port}: cannot listen for text clients on "
                    f"tcp:{port}:interface=127.0.0.1:backlog=1024: address already in use",
                )

    def test_workers_without_a_shared_room_are_refused(self) -> None:
        self.assertEqual(
            self.refused("--port", "0", "--binary-port", "none", "--workers", "2"),
            "twistd tinytcp: --workers 2: each worker would have its own chat room; add --redis URL to share one"
            " room, or --separate-rooms to allow one room per worker",
        )

    def test_metrics_with_workers_are_refused(self) -> None:
        line = self.refused("--port", "0", "--workers", "2", "--separate-rooms", "--metrics-port", "0")
        self.assertIn("--workers 2: --metrics-port is not supported with workers", line)


class WorkersDaemonTests(SynchronousTestCase):
    def test_a_daemon_supervises_its_workers_and_takes_them_along_when_it_stops(self) -> None:
        workdir = tempfile.mkdtemp(prefix="tinytcp-workers-")
        self.addCleanup(shutil.rmtree, workdir, True)
        port = free_port()
        args = ("--port", str(port), "--binary-port", "none", "--workers", "2", "--separate-rooms")
        done = start_twistd(*args, daemon=True, workdir=workdir)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "", ""))
        pidfile = os.path.join(workdir, "twistd.pid")
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_kill, pid)
        held = one_client_per_worker(port)
        pids = [int(info(sock)["pid"]) for sock in held.values()]
        self.assertNotIn(pid, pids)
        os.kill(pid, signal.SIGTERM)
        for sock in held.values():
            self.addCleanup(sock.close)
            self.assertEqual(read_until_closed(sock), b"BYE\r\n")
        wait_until(lambda: not os.path.exists(pidfile), what="the pid file to go")
        wait_until(lambda: not any(alive(p) for p in pids), what="the workers to exit")
        with open(os.path.join(workdir, "twistd.log")) as f:
            log = f.read()
        self.assertRegex(log, r"worker 1 \[\d+\] 127\.0\.0\.1:\d+ connected \(text\)")
        self.assertNotIn("Traceback", log)


class WorkersUnderSystemdTests(SynchronousTestCase):
    def test_socket_activation_passes_systemds_sockets_to_every_worker(self) -> None:
        activate = shutil.which("systemd-socket-activate")
        self.assertIsNotNone(activate, "systemd-socket-activate is missing: apt-get install systemd (see .ci/run)")
        assert activate is not None
        workdir = tempfile.mkdtemp(prefix="tinytcp-systemd-")
        self.addCleanup(shutil.rmtree, workdir, True)
        text_port, binary_port = free_port(), free_port()
        command = [activate, "-l", f"127.0.0.1:{text_port}", "-l", f"127.0.0.1:{binary_port}", "--fdname=text:binary"]
        command += [twistd_path(), "-n", "--pidfile=", "--logfile=-", "tinytcp", "--workers", "2", "--separate-rooms"]
        command += ["--port", "systemd:domain=INET:name=text", "--binary-port", "systemd:domain=INET:name=binary"]
        log_path = os.path.join(workdir, "out.log")
        with open(log_path, "wb") as out:
            process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)

        self.addCleanup(stop)
        first = connect_activated(text_port)
        self.addCleanup(first.close)
        read_lines(first, 1)
        held = {info(first)["worker"]: first}
        deadline = time.monotonic() + 20
        while len(held) < 2 and time.monotonic() < deadline:
            sock = socket.create_connection(("127.0.0.1", text_port), timeout=10)
            sock.settimeout(10)
            self.addCleanup(sock.close)
            read_lines(sock, 1)
            held.setdefault(info(sock)["worker"], sock)
        self.assertEqual(set(held), {"1", "2"})
        with connect_activated(binary_port) as binary:
            binary.sendall(encode_frame(1, b"activated"))
            self.assertEqual(binary.recv(100), encode_frame(1, b"activated"))
            process.send_signal(signal.SIGTERM)
            self.assertEqual(read_until_closed(binary), b"\x03\x00\x00\x00\x03BYE")
        for sock in held.values():
            self.assertEqual(read_until_closed(sock), b"BYE\r\n")
        process.wait(30)
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertIn(f"text mode listening on tcp:127.0.0.1:{text_port}", log)
        self.assertNotIn("Traceback", log)


class SupervisorTests(SynchronousTestCase):
    def supervisor(self) -> tuple[Supervisor, Clock, list[int]]:
        clock = Clock()
        supervisor = Supervisor([], 1, [], shutdown_grace=1.0, reactor=clock)
        spawned: list[int] = []
        self.patch(supervisor, "spawn", spawned.append)
        return supervisor, clock, spawned

    def die(self, supervisor: Supervisor, clock: Clock, lived: float) -> float:
        worker = supervisor_module.WorkerProcess(supervisor, 1, clock.seconds())
        supervisor.workers[1] = worker
        clock.advance(lived)
        supervisor.ended(worker, Failure(ProcessTerminated(signal=signal.SIGKILL)))
        (call,) = clock.getDelayedCalls()
        delay = round(call.getTime() - clock.seconds(), 6)
        clock.advance(delay)
        return delay

    def test_restart_delay_doubles_to_ten_seconds_and_starts_over_after_a_stable_run(self) -> None:
        supervisor, clock, spawned = self.supervisor()
        delays = [self.die(supervisor, clock, 0.1) for _ in range(7)]
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0])
        self.assertEqual(self.die(supervisor, clock, 31.0), 0.5)
        self.assertEqual(spawned, [1] * 8)

    def test_no_restart_once_stopping(self) -> None:
        supervisor, clock, spawned = self.supervisor()
        worker = supervisor_module.WorkerProcess(supervisor, 1, clock.seconds())
        supervisor.workers[1] = worker
        supervisor.stopping = True
        supervisor.ended(worker, Failure(ProcessDone(0)))
        self.assertEqual((clock.getDelayedCalls(), spawned), ([], []))

    def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_and_margin(self) -> None:
        supervisor, clock, _ = self.supervisor()
        signals: list[str] = []

        class Transport:
            pid = 1234

            def signalProcess(self, name: str) -> None:
                signals.append(name)

        worker = supervisor_module.WorkerProcess(supervisor, 1, clock.seconds())
        worker.transport = Transport()  # type: ignore[assignment]
        supervisor.workers[1] = worker
        stopped = supervisor.stopService()
        self.assertEqual(signals, ["TERM"])
        clock.advance(1.0 + supervisor_module.KILL_MARGIN - 0.1)
        self.assertEqual(signals, ["TERM"])
        clock.advance(0.1)
        self.assertEqual(signals, ["TERM", "KILL"])
        self.assertNoResult(stopped)
        supervisor.ended(worker, Failure(ProcessTerminated(signal=signal.SIGKILL)))
        self.successResultOf(stopped)

    def test_worker_command_drops_workers_and_keeps_the_rest(self) -> None:
        self.assertEqual(
            worker_arguments(["--port", "0", "--workers", "2", "--workers=3", "--separate-rooms"]),
            ["--port", "0", "--separate-rooms"],
        )

    def test_how_a_worker_ended_reads_as_an_operator_expects(self) -> None:
        self.assertEqual(describe_end(Failure(ProcessTerminated(signal=9))), "signal 9 (SIGKILL)")
        self.assertEqual(describe_end(Failure(ProcessTerminated(exitCode=1))), "exit status 1")

    def test_worker_info_round_trips_through_the_environment(self) -> None:
        worker = WorkerInfo(2, 3, ((3, "INET"), (4, "UNIX")))
        self.assertEqual(from_environ({ENV: worker.encode()}), worker)
        self.assertIsNone(from_environ({}))

    def test_reuseport_sockets_share_port_0s_port(self) -> None:
        first = bind_tcp("127.0.0.1", 0, 16, reuse_port=True)
        self.addCleanup(first.close)
        second = bind_tcp("127.0.0.1", first.getsockname()[1], 16, reuse_port=True)
        self.addCleanup(second.close)
        self.assertEqual(first.getsockname(), second.getsockname())
