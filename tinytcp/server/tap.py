"""``twistd tinytcp``: command-line options and the service they describe."""

from __future__ import annotations

import getopt
import os
import re
import signal
import sys
from typing import Any

from twisted.application.service import IService
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.python import usage

from tinytcp import __version__
from tinytcp.auth.service import DEFAULT_ACCOUNTS
from tinytcp.cluster.listeners import WORKER_SOCKETS
from tinytcp.cluster.worker import from_environ
from tinytcp.lean import without_openssl
from tinytcp.ops import config, logs
from tinytcp.ops.startup import (
    MAX_FRAME_LIMIT,
    StartupError,
    check_endpoint,
    choice,
    one_line_text,
    seconds,
    whole_number,
)
from tinytcp.server.service import DEFAULT_BINARY_PORT, DEFAULT_TEXT_PORT, endpoint_description, make_service
from tinytcp.server.state import DEFAULT_BANNER, Settings
from tinytcp.web.origin import origin_of

#: how usage errors start, so the operator sees which program and subcommand complained
PROG = "twistd tinytcp"

#: an endpoint description that runs TLS: ssl: or tls:, first or under a wrapper (haproxy:ssl:)
TLS_DESCRIPTION = re.compile(r"(?:^|:)(?:ssl|tls):", re.IGNORECASE)

#: options given once per listener; in a config file they take one value or a list
LISTS = frozenset({"port", "binary-port", "web-port", "web-origin"})
#: options that only make sense on the command line
COMMAND_LINE_ONLY = frozenset({"config", "check-config", "help", "version"})


def port_value(option: str) -> Any:
    """A parser for a port or endpoint description from a config file (a number or a string)."""

    def parse(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise usage.UsageError(f"--{option}: {value!r} is not a port number or endpoint description")
        return str(value)

    return parse


def web_origin(value: Any) -> str:
    """A --web-origin value: scheme://host[:port], or * for any origin."""
    if not isinstance(value, str) or (value != "*" and origin_of(value) is None):
        raise usage.UsageError(f"--web-origin: {value!r} is not scheme://host[:port] or *")
    return value


def workers_value(value: Any) -> int:
    """A --workers value: a whole number of processes (1 or more), or ``auto`` for one per core."""
    if value == "auto":
        return os.cpu_count() or 1
    try:
        return whole_number("workers")(value)
    except usage.UsageError:
        raise usage.UsageError(f"--workers: {value!r} is not a whole number 1 or more, or auto") from None


def require_whole_websocket_messages() -> None:
    """--web-port needs Twisted 26.10: older WebSocket layers hand over fragments, not messages."""
    from twisted.python.versions import Version

    import twisted

    if twisted.version < Version("Twisted", 26, 10, 0):
        raise usage.UsageError(
            f"--web-port: needs Twisted 26.10 or later (this is {twisted.__version__}): "
            "pip install 'twisted[websocket]>=26.10'"
        )


def redis_url(value: Any) -> str:
    """A --redis value: a URL Redis can be reached at (tinytcp/cluster/redis.py)."""
    from tinytcp.cluster.redis import parse_url

    if not isinstance(value, str):
        raise usage.UsageError(f"--redis: {value!r} is not a URL")
    try:
        parse_url(value)
    except ValueError as problem:
        raise usage.UsageError(f"--redis: {problem}") from None
    return value


def require_redis_client() -> None:
    """--redis talks to Redis through txredisapi (the extra tinytcp[redis])."""
    import importlib.util

    if importlib.util.find_spec("txredisapi") is None:
        raise usage.UsageError("--redis needs txredisapi: pip install 'tinytcp[redis]'")


class Options(usage.Options, strcred.AuthOptionMixin):
    """twistd tinytcp [options]"""

    #: --auth checkers must check user names and passwords (file:, memory:, unix:, ...)
    supportedInterfaces = [IUsernamePassword]

    synopsis = "[options]"
    longdesc = (
        "Serve the tinytcp commands (TIME, ECHO, REVERSE, HELP, NICK, SAY, WHO, QUIT) as text lines for telnet "
        "and nc, and as binary frames for programs. A bare port number listens on 127.0.0.1 "
        "only; pass an endpoint description (tcp:40000:interface=0.0.0.0, tcp6:40000, "
        "ssl:..., tls:..., unix:...) to listen elsewhere. --web-port serves a web page (chat, commands, status) "
        "and a WebSocket speaking the text format. Accounts (REGISTER, LOGIN, LOGOUT) come with --accounts, "
        "--auth or --require-login; see the README's Secure deployment. See docs/protocol.md for the wire formats."
    )
    optFlags = [
        ["verbose", "v", "Log every request as it arrives and everything written (costs throughput)."],
        ["check-config", None, "Check the options and the --config file, say so, and exit (like nginx -t)."],
        ["require-client-cert", None, "TLS listeners refuse clients without a certificate from --client-ca."],
        [
            "require-login",
            None,
            "Clients may only LOGIN, REGISTER, HELP and QUIT until logged in (ERROR AUTH_REQUIRED); turns accounts on.",
        ],
        [
            "allow-register",
            None,
            "Let clients REGISTER accounts under --require-login (without it, REGISTER is always allowed).",
        ],
        [
            "allow-plaintext-login",
            None,
            "Accept LOGIN and REGISTER over plain TCP from other machines (passwords in clear!); by default they"
            " need TLS, a unix socket or loopback (ERROR TLS_REQUIRED).",
        ],
        [
            "no-protected-mode",
            None,
            "Serve clients from other machines even without --require-login (by default they get ERROR DENIED).",
        ],
        [
            "separate-rooms",
            None,
            "With --workers above 1 and no --redis: allow one chat room per worker (clients of different"
            " workers do not see each other's chat).",
        ],
    ]
    optParameters = [
        [
            "config",
            None,
            None,
            "A TOML file of options (keys: the long option names; see contrib/tinytcp.toml). "
            "The command line overrides it.",
        ],
        [
            "banner",
            None,
            DEFAULT_BANNER,
            "Text sent after WELCOME to each text client on connect.",
            one_line_text("banner"),
        ],
        [
            "max-line",
            None,
            Settings.max_line,
            "Longest text line in bytes; longer gets ERROR LINE_TOO_LONG.",
            whole_number("max-line"),
        ],
        [
            "max-frame",
            None,
            Settings.max_frame,
            "Largest binary payload in bytes; larger gets ERROR FRAME_TOO_LARGE.",
            whole_number("max-frame", high=MAX_FRAME_LIMIT),
        ],
        [
            "max-connections",
            None,
            Settings.max_connections,
            "Most connections open at once (both modes); past it a client gets ERROR BUSY.",
            whole_number("max-connections"),
        ],
        [
            "max-pending",
            None,
            Settings.max_pending,
            "Bytes of pushed chat messages a client may leave unread before ERROR SLOW_CONSUMER"
            " (never below --max-frame + 64 KiB).",
            whole_number("max-pending"),
        ],
        [
            "idle-timeout",
            None,
            Settings.idle_timeout,
            "Seconds a client may neither send nor read before ERROR IDLE_TIMEOUT; 0 turns it off.",
            seconds("idle-timeout"),
        ],
        [
            "shutdown-grace",
            None,
            Settings.shutdown_grace,
            "Seconds a closing client (on stop, or closed by the server for any reason) may take to read"
            " its last replies before it is aborted.",
            seconds("shutdown-grace"),
        ],
        [
            "metrics-port",
            None,
            None,
            "Serve Prometheus metrics at /metrics here: a port number (127.0.0.1 only) or endpoint "
            "description; needs pip install 'tinytcp[metrics]'. Off by default.",
        ],
        [
            "workers",
            None,
            1,
            "Worker processes serving every listener (auto: one per core); above 1, this process supervises"
            " them. --max-connections and INFO's client counts are per worker.",
            workers_value,
        ],
        [
            "worker-sockets",
            None,
            WORKER_SOCKETS[0],
            "How workers share a TCP listener: reuseport (one SO_REUSEPORT socket each, the kernel spreads"
            " clients evenly) or shared (one socket for all).",
            choice("worker-sockets", WORKER_SOCKETS),
        ],
        [
            "log-format",
            None,
            "text",
            "text, or json: one JSON object a line (Twisted's JSON events) for log shippers.",
            choice("log-format", logs.LOG_FORMATS),
        ],
        [
            "say-rate",
            None,
            Settings.say_rate,
            "SAY messages a second each client may send after a burst of --say-burst; faster gets"
            " ERROR RATE_LIMITED. 0 turns the limit off.",
            seconds("say-rate", "a number of messages a second"),
        ],
        [
            "say-burst",
            None,
            Settings.say_burst,
            "SAY messages a client may send at once before --say-rate applies.",
            whole_number("say-burst"),
        ],
        [
            "client-ca",
            None,
            None,
            "PEM file of CAs: TLS listeners ask clients for a certificate and accept only those these CAs signed"
            " (mutual TLS; optional for the client unless --require-client-cert).",
        ],
        [
            "accounts",
            None,
            None,
            f"SQLite file of accounts (REGISTER, LOGIN, LOGOUT); turns accounts on. With --require-login or"
            f" --allow-register alone: {DEFAULT_ACCOUNTS} in the working folder.",
        ],
        [
            "bcrypt-rounds",
            None,
            Settings.bcrypt_rounds,
            "bcrypt cost of new password hashes (4-31).",
            whole_number("bcrypt-rounds", low=4, high=31),
        ],
        [
            "login-failures",
            None,
            Settings.login_failures,
            "Failed LOGINs per user name within --login-window before ERROR RATE_LIMITED.",
            whole_number("login-failures"),
        ],
        [
            "peer-login-failures",
            None,
            Settings.peer_login_failures,
            "Failed LOGINs (and REGISTERs) per client address within --login-window before ERROR RATE_LIMITED.",
            whole_number("peer-login-failures"),
        ],
        [
            "login-window",
            None,
            Settings.login_window,
            "Seconds over which failed LOGINs are counted.",
            seconds("login-window"),
        ],
        [
            "redis",
            None,
            None,
            "Share one chat room (SAY, presence, WHO, nicks) with every tinytcp connected to this Redis:"
            " redis://[[user]:password@]host[:port][/db], rediss://... (TLS, ?cafile=), unix:///path[?db=N];"
            " needs pip install 'tinytcp[redis]'. Off by default: the room is this process's own.",
            redis_url,
        ],
        [
            "redis-ttl",
            None,
            Settings.redis_ttl,
            "With --redis: seconds after which a node that stopped heartbeating (crashed) loses its nicks"
            " (heartbeat every third of it; at least 3).",
            seconds("redis-ttl"),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["binary-port"] = []
        self["web-port"] = []
        self["web-origin"] = []
        #: the options named on the command line, which the config file does not override
        self.given: set[str] = set()
        #: option -> "file:line" for the values that came from the config file
        self.origin: dict[str, str] = {}
        #: the tinytcp options as given, which --workers hands on to each worker
        self.args: list[str] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Parse, and turn a usage error into one line on stderr and exit status 1.

        twistd would print its whole usage text above the error; the one line names the
        option and the value, which is what the operator has to fix.
        """
        args = sys.argv[1:] if options is None else list(options)
        self.args = args
        try:
            self.given = self.named_options(args)
            super().parseOptions(args)
        except usage.UsageError as e:
            hint = f" ({PROG} --help lists them)" if "not recognized" in str(e) else ""
            raise SystemExit(f"{PROG}: {e}{hint}") from None

    def named_options(self, args: list[str]) -> set[str]:
        """The long names of the options in ``args`` (parseOptions reports any that are wrong)."""
        try:
            found, _ = getopt.getopt(args, self.shortOpt, self.longOpt)
        except getopt.error:
            return set()
        names = set()
        for flag, _ in found:
            name = flag.lstrip("-")
            name = self.synonyms.get(name) or self.synonyms.get(name.replace("-", "_"), name)
            names.add(name.replace("_", "-"))
        return names

    def file_parsers(self) -> dict[str, Any]:
        """What a config file may set: every option but the command-line-only ones (None: a flag)."""
        parsers: dict[str, Any] = {name: None for name, _, _ in self.optFlags}
        for name, _, _, _, *coerce in self.optParameters:
            parsers[name] = coerce[0] if coerce else str
        parsers.update({name: port_value(name) for name in ("port", "binary-port", "web-port", "metrics-port")})
        parsers["web-origin"] = web_origin
        return {name: parse for name, parse in parsers.items() if name not in COMMAND_LINE_ONLY}

    def read_config(self) -> None:
        """Take every value of the --config file that the command line did not set."""
        for key, setting in config.load(self["config"], self.file_parsers(), LISTS).items():
            if key not in self.given:
                self[key] = setting.value
                self.origin[key] = setting.where

    def opt_version(self) -> None:
        """Print tinytcp's version (and Twisted's) and exit."""
        import twisted

        print(f"tinytcp {__version__} (Twisted {twisted.__version__})")
        raise SystemExit(0)

    def opt_port(self, port: str) -> None:
        """Text clients: a port number (127.0.0.1 only) or endpoint; repeatable [default: 40000]"""
        self["port"].append(port)

    opt_p = opt_port

    def opt_auth(self, description: str) -> None:
        """Check passwords with a twisted.cred checker instead of --accounts, e.g. file:/etc/tinytcp/passwd
        (user:password lines); no REGISTER then. --help-auth lists the checkers."""
        strcred.AuthOptionMixin.opt_auth(self, description)

    def opt_binary_port(self, port: str) -> None:
        """Binary clients, as --port; 'none' turns binary mode off [default: 40001]"""
        self["binary-port"].append(port)

    def opt_web_port(self, port: str) -> None:
        """The web page (/) and its WebSocket (/ws), as --port; repeatable [default: off]"""
        self["web-port"].append(port)

    def opt_web_origin(self, origin: str) -> None:
        """Also accept WebSockets from pages of this origin (scheme://host[:port]), '*' for any;
        repeatable [default: the page's own origin only]"""
        self["web-origin"].append(web_origin(origin))

    def postOptions(self) -> None:
        if self["config"]:
            self.read_config()
        if not self["port"]:
            self["port"] = [str(DEFAULT_TEXT_PORT)]
        if not self["binary-port"]:
            self["binary-port"] = [str(DEFAULT_BINARY_PORT)]
        if "none" in self["binary-port"]:
            if len(self["binary-port"]) > 1:
                raise usage.UsageError("--binary-port none cannot be combined with other binary ports")
            self["binary-port"] = []
        self.check_security_options()
        worker = from_environ()
        if worker is None:
            self.check_workers()
        logs.install(getattr(self, "parent", None), self["log-format"], worker is not None)
        with without_openssl(not self.uses_tls()):
            use_tinytcp_reactor()
            from twisted.internet import endpoints, reactor  # noqa: F401  (imported under the decision)

        if worker is not None:
            # the supervisor checked every listener and bound it; a worker inherits the sockets
            # (and not systemd's variables, so a systemd: description would not parse here)
            return

        metrics_port = [self["metrics-port"]] if self["metrics-port"] is not None else []
        listeners = {
            "port": self["port"],
            "binary-port": self["binary-port"],
            "web-port": self["web-port"],
            "metrics-port": metrics_port,
        }
        for option, ports in listeners.items():
            for port in ports:
                try:
                    check_endpoint(option, port, endpoint_description(port), reactor)
                except usage.UsageError as e:
                    if option not in self.origin:
                        raise
                    raise usage.UsageError(f"{self.origin[option]}: {str(e).removeprefix('--')}") from None
        if metrics_port:
            try:
                from tinytcp.ops.metrics import require_prometheus_client  # twisted.web only when asked for

                require_prometheus_client()
            except StartupError as e:
                raise usage.UsageError(str(e)) from None
        if self["web-port"]:
            require_whole_websocket_messages()
        if self["redis"] is not None:
            require_redis_client()
            if self["redis-ttl"] < 3:
                raise usage.UsageError(f"--redis-ttl: {self['redis-ttl']:g} is below 3 seconds")
        if self["check-config"]:
            checked = f" ({self['config']})" if self["config"] else ""
            print(f"{PROG}: the configuration is valid{checked}")
            raise SystemExit(0)

    def check_workers(self) -> None:
        """--workers above 1: refuse the combinations a set of worker processes cannot honour."""
        workers = self["workers"]
        if workers == 1:
            return
        if self["redis"] is None and not self["separate-rooms"]:
            raise usage.UsageError(
                f"--workers {workers}: each worker would have its own chat room; add --redis URL to share one room,"
                " or --separate-rooms to allow one room per worker"
            )
        if self["metrics-port"] is not None:
            raise usage.UsageError(
                f"--workers {workers}: --metrics-port is not supported with workers (each worker counts for itself);"
                " ask each worker with INFO, or run one process"
            )

    def uses_tls(self) -> bool:
        """Whether this configuration needs pyOpenSSL: a TLS listener (``ssl:``, ``tls:``, also
        behind ``haproxy:``), ``--client-ca``, or Redis over TLS (``rediss://``).  Without it, the
        server runs without loading pyOpenSSL (tinytcp/lean.py)."""
        listeners = [*self["port"], *self["binary-port"], *self["web-port"], self["metrics-port"] or ""]
        if any(TLS_DESCRIPTION.search(value) for value in listeners):
            return True
        return bool(self["client-ca"]) or (self["redis"] or "").lower().startswith("rediss:")

    def check_security_options(self) -> None:
        """Accounts from one source, and a --client-ca file that holds certificates."""
        if self["accounts"] and self.get("credCheckers"):
            raise usage.UsageError("--auth checks passwords instead of --accounts: give one of them")
        if self["require-client-cert"] and not self["client-ca"]:
            raise usage.UsageError("--require-client-cert needs --client-ca")
        if self["client-ca"]:
            try:
                from tinytcp.server.tls import ClientCertificates

                ClientCertificates(self["client-ca"], bool(self["require-client-cert"]))
            except ImportError:
                raise usage.UsageError("--client-ca needs pyOpenSSL: pip install 'tinytcp[tls]'") from None
            except (OSError, ValueError) as problem:
                raise usage.UsageError(f"--client-ca {self['client-ca']}: {problem}") from None


def use_tinytcp_reactor() -> None:
    """Install tinytcp's epoll reactor (tinytcp/reactor.py) unless a reactor is already chosen.

    twistd installs the reactor named by its ``--reactor`` before parsing tinytcp's options;
    without one, the first import of ``twisted.internet.reactor`` (just after this) would
    install Twisted's default.  Where epoll is missing, Twisted's default stays.
    """
    if "twisted.internet.reactor" in sys.modules:
        return
    try:
        from tinytcp.server import reactor
    except ImportError:  # no epoll on this platform
        return
    reactor.install()


def settings_from(options: Options | dict[str, Any]) -> Settings:
    """The Settings a parsed command line asks for."""
    accounts = options["accounts"]
    if accounts is None and not options.get("credCheckers") and (options["require-login"] or options["allow-register"]):
        accounts = DEFAULT_ACCOUNTS
    return Settings(
        banner=options["banner"],
        max_line=options["max-line"],
        max_frame=options["max-frame"],
        max_connections=options["max-connections"],
        max_pending=options["max-pending"],
        idle_timeout=options["idle-timeout"],
        shutdown_grace=options["shutdown-grace"],
        say_rate=options["say-rate"],
        say_burst=options["say-burst"],
        verbose=bool(options["verbose"]),
        client_ca=options["client-ca"],
        require_client_cert=bool(options["require-client-cert"]),
        accounts=accounts,
        require_login=bool(options["require-login"]),
        allow_register=bool(options["allow-register"]) or not options["require-login"],
        allow_plaintext_login=bool(options["allow-plaintext-login"]),
        protected_mode=not options["no-protected-mode"],
        bcrypt_rounds=options["bcrypt-rounds"],
        login_failures=options["login-failures"],
        peer_login_failures=options["peer-login-failures"],
        login_window=options["login-window"],
        redis=options["redis"],
        redis_ttl=options["redis-ttl"],
    )


def makeService(options: Options) -> IService:
    """What twistd runs: every listener and the shared server state, already listening.

    twistd calls this before it daemonizes, and only a failure here reaches the terminal as
    our own one line: a listener that failed later, in the daemon, would leave the parent
    waiting on twistd's start-up pipe.  So the ports are bound now.
    """
    worker = from_environ()
    if worker is None and options["workers"] > 1:
        return make_supervisor(options)
    endpoint_for = None
    if worker is not None:
        from twisted.internet import reactor

        from tinytcp.cluster.worker import ParentWatch, adopted_endpoints

        endpoint_for = adopted_endpoints(worker, reactor)
    try:
        service = make_service(
            settings_from(options),
            options["port"],
            options["binary-port"],
            metrics_port=options["metrics-port"],
            checkers=options.get("credCheckers"),
            web_ports=options["web-port"],
            web_origins=options["web-origin"],
            endpoint_for=endpoint_for,
        )
        service.listen()
    except StartupError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    service.stop_on_hangup = True
    if worker is not None:
        service.server.worker = worker.index
        service.server.workers = worker.count
        ParentWatch(reactor).start()
        # Ctrl+C reaches the whole process group; the supervisor stops its workers itself,
        # so a worker does not also stop on its own (and look like a crash to restart)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return service


def make_supervisor(options: Options) -> IService:
    """--workers above 1: bind every listener here, before twistd daemonizes, and supervise
    workers that serve them (tinytcp/cluster/)."""
    from twisted.internet import reactor

    from tinytcp.cluster.listeners import bind_all
    from tinytcp.cluster.supervisor import Supervisor, worker_arguments

    ports = [("text", port) for port in options["port"]]
    ports += [("binary", port) for port in options["binary-port"]]
    ports += [("web", port) for port in options["web-port"]]
    try:
        listeners = bind_all(ports, options["workers"], options["worker-sockets"], reactor)
    except StartupError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    parent = getattr(options, "parent", None) or {}
    twistd_arguments = [f"--reactor={parent['reactor']}"] if parent.get("reactor") else []
    supervisor = Supervisor(
        listeners,
        options["workers"],
        worker_arguments(options.args),
        options["shutdown-grace"],
        reactor,
        twistd_arguments,
    )
    supervisor.stop_on_hangup = True
    return supervisor
