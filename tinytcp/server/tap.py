"""``twistd tinytcp``: command-line options and the service they describe."""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import endpoints
from twisted.python import usage

from tinytcp.auth.service import DEFAULT_ACCOUNTS
from tinytcp.server.service import DEFAULT_BINARY_PORT, DEFAULT_TEXT_PORT, endpoint_description, make_service
from tinytcp.server.state import DEFAULT_BANNER, Settings


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive number")
    return number


def _rounds(value: str) -> int:
    number = int(value)
    if not 4 <= number <= 31:
        raise ValueError(f"{value} is not between 4 and 31")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"{value} is negative")
    return number


class Options(usage.Options, strcred.AuthOptionMixin):
    """twistd tinytcp [options]"""

    #: --auth checkers must check user names and passwords (file:, memory:, unix:, ...)
    supportedInterfaces = [IUsernamePassword]

    synopsis = "[options]"
    longdesc = (
        "Serve the tinytcp commands (TIME, ECHO, REVERSE, HELP, NICK, SAY, WHO, QUIT) as text lines for telnet "
        "and nc, and as binary frames for programs. A bare port number listens on 127.0.0.1 "
        "only; pass an endpoint description (tcp:40000:interface=0.0.0.0, tcp6:40000, "
        "ssl:..., tls:..., unix:...) to listen elsewhere. Accounts (REGISTER, LOGIN, LOGOUT) come with --accounts, "
        "--auth or --require-login; see the README's Secure deployment. See docs/protocol.md for the wire formats."
    )
    optFlags = [
        ["verbose", "v", "Log every request and reply (costs throughput)."],
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
    ]
    optParameters = [
        ["banner", None, DEFAULT_BANNER, "Text sent after WELCOME to each text client on connect."],
        [
            "accounts",
            None,
            None,
            f"SQLite file of accounts (REGISTER, LOGIN, LOGOUT); turns accounts on. With --require-login or"
            f" --allow-register alone: {DEFAULT_ACCOUNTS} in the working folder.",
        ],
        ["bcrypt-rounds", None, Settings.bcrypt_rounds, "bcrypt cost of new password hashes (4-31).", _rounds],
        [
            "login-failures",
            None,
            Settings.login_failures,
            "Failed LOGINs per user name within --login-window before ERROR RATE_LIMITED.",
            _positive_int,
        ],
        [
            "peer-login-failures",
            None,
            Settings.peer_login_failures,
            "Failed LOGINs (and REGISTERs) per client address within --login-window before ERROR RATE_LIMITED.",
            _positive_int,
        ],
        [
            "login-window",
            None,
            Settings.login_window,
            "Seconds over which failed LOGINs are counted.",
            _non_negative_float,
        ],
        [
            "client-ca",
            None,
            None,
            "PEM file of CAs: TLS listeners ask clients for a certificate and accept only those these CAs signed"
            " (mutual TLS; optional for the client unless --require-client-cert).",
        ],
        [
            "max-line",
            None,
            Settings.max_line,
            "Longest text line in bytes; longer gets ERROR LINE_TOO_LONG.",
            _positive_int,
        ],
        [
            "max-frame",
            None,
            Settings.max_frame,
            "Largest binary payload in bytes; larger gets ERROR FRAME_TOO_LARGE.",
            _positive_int,
        ],
        [
            "max-connections",
            None,
            Settings.max_connections,
            "Most connections open at once (both modes); past it a client gets ERROR BUSY.",
            _positive_int,
        ],
        [
            "max-pending",
            None,
            Settings.max_pending,
            "Bytes of pushed chat messages a client may leave unread before ERROR SLOW_CONSUMER"
            " (never below --max-frame + 64 KiB).",
            _positive_int,
        ],
        [
            "idle-timeout",
            None,
            Settings.idle_timeout,
            "Seconds a client may neither send nor read before ERROR IDLE_TIMEOUT; 0 turns it off.",
            _non_negative_float,
        ],
        [
            "shutdown-grace",
            None,
            Settings.shutdown_grace,
            "Seconds a closing client (on stop, or closed by the server for any reason) may take to read"
            " its last replies before it is aborted.",
            _non_negative_float,
        ],
        [
            "say-rate",
            None,
            Settings.say_rate,
            "SAY messages a second each client may send after a burst of --say-burst; faster gets"
            " ERROR RATE_LIMITED. 0 turns the limit off.",
            _non_negative_float,
        ],
        [
            "say-burst",
            None,
            Settings.say_burst,
            "SAY messages a client may send at once before --say-rate applies.",
            _positive_int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["binary-port"] = []

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

    def postOptions(self) -> None:
        if not self["port"]:
            self["port"] = [str(DEFAULT_TEXT_PORT)]
        if not self["binary-port"]:
            self["binary-port"] = [str(DEFAULT_BINARY_PORT)]
        if "none" in self["binary-port"]:
            if len(self["binary-port"]) > 1:
                raise usage.UsageError("--binary-port none cannot be combined with other binary ports")
            self["binary-port"] = []
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
        use_tinytcp_reactor()
        from twisted.internet import reactor

        for port in self["port"] + self["binary-port"]:
            try:
                endpoints.serverFromString(reactor, endpoint_description(port))
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"bad port or endpoint description {port!r}: {e}") from None


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
    )


def makeService(options: Options) -> IService:
    """What twistd runs: every listener and the shared server state."""
    service = make_service(
        settings_from(options), options["port"], options["binary-port"], checkers=options.get("credCheckers")
    )
    service.stop_on_hangup = True
    return service
