"""``tinytcp-client``: send commands from the arguments, a script, stdin or a prompt.

The library (:mod:`tinytcp.client`) does the connection, pipelining and matching; this
module only decides where command lines come from and how replies are printed.  Every
mode runs on Twisted's asyncio reactor, because the interactive prompt (prompt_toolkit)
is asyncio code and one reactor for all modes keeps a single code path.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from tinytcp import __version__
from tinytcp.client.library import (
    Client,
    ConnectionClosed,
    ConnectTimeout,
    ProtocolError,
    Refused,
    ReplyTimeout,
    RequestError,
    TCPAddressEndpoint,
    connect,
    is_ip_address,
    reply_line,
)
from tinytcp.client.tls import TLSConfigError, TLSSettings
from tinytcp.protocol.reply import Code, Reply
from tinytcp.protocol.wire import parse_text_request

if TYPE_CHECKING:  # prompt_toolkit is imported only for the prompt: scripted runs start faster
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

PROG = "tinytcp-client"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"text": 40000, "binary": 40001}
DEFAULT_TIMEOUT = 10.0
PROMPT = "tinytcp> "

#: exit statuses
OK = 0
ERROR_REPLY = 1
FAILED = 2
INTERRUPTED = 130


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {value!r}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {value!r}")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; usage errors exit with status 2 (argparse's own convention)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Send tinytcp commands and print each reply as one line. With COMMANDs, send them and exit; "
            "with --script or a non-terminal stdin, send one command per line; otherwise prompt interactively. "
            "The same command syntax (ECHO hi, rev abc, TIME, HELP, QUIT) works in both modes."
        ),
        epilog=(
            "Exit status: 0 every reply fine; 1 some reply was an ERROR; 2 usage error, or the server "
            "could not be reached, stopped answering or closed before every reply came."
        ),
    )
    parser.add_argument("commands", nargs="*", metavar="COMMAND", help='a command line, e.g. TIME "ECHO hi" QUIT')
    parser.add_argument("--host", help=f"server host (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=_port, help="server port (default 40000, or 40001 with --binary)")
    parser.add_argument("--unix", metavar="PATH", help="connect to the server's unix socket PATH instead")
    parser.add_argument(
        "--endpoint",
        metavar="DESCRIPTION",
        help="connect to a Twisted client endpoint description instead, e.g. tcp6:host=::1:port=40000 "
        "or tls:example.org:40443:trustRoots=/etc/tinytcp/ca",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="speak TLS; the server's certificate is verified")
    tls.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE (PEM), not the system's")
    tls.add_argument(
        "--server-name",
        metavar="NAME",
        help="the name the server's certificate must carry, also sent as SNI (default: --host)",
    )
    tls.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        help="DANGER: accept any server certificate; anyone on the path can read and change the traffic",
    )
    tls.add_argument("--cert", metavar="FILE", help="client certificate (PEM, may hold the key too) for mutual TLS")
    tls.add_argument("--key", metavar="FILE", help="the private key of --cert (default: in the --cert file)")
    parser.add_argument("--binary", action="store_true", help="speak the binary frame protocol")
    parser.add_argument("--script", metavar="FILE", help="read one command per line from FILE (- for stdin)")
    parser.add_argument("--transcript", action="store_true", help="print a '-> request' / '<- reply' log")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="bound on connecting and on each reply (default %(default)g)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    if args.script is not None and args.commands:
        parser.error("give COMMANDs or --script, not both")
    args.mode = "binary" if args.binary else "text"
    if args.unix is not None and args.endpoint is not None:
        parser.error("give --unix or --endpoint, not both")
    if (args.unix is not None or args.endpoint is not None) and (args.host is not None or args.port is not None):
        parser.error("--host and --port do not go with --unix or --endpoint")
    for name in ("cafile", "server_name", "cert", "key", "insecure_skip_verify"):
        if getattr(args, name) and not args.tls:
            parser.error(f"--{name.replace('_', '-')} needs --tls")
    if args.key is not None and args.cert is None:
        parser.error("--key needs --cert")
    if args.insecure_skip_verify and (args.cafile or args.server_name):
        parser.error("--insecure-skip-verify checks nothing: --cafile and --server-name would be ignored")
    if args.tls and not args.insecure_skip_verify and args.server_name is None and args.host is None:
        if args.unix is not None or args.endpoint is not None:
            parser.error("--tls with --unix or --endpoint needs --server-name (the name on the server's certificate)")
    if args.host is None:
        args.host = DEFAULT_HOST
    if args.port is None:
        args.port = DEFAULT_PORTS[args.mode]
    return args


def target(args: argparse.Namespace) -> str:
    """Where the client connects, as messages show it."""
    if args.endpoint is not None:
        return args.endpoint
    if args.unix is not None:
        return f"unix:{args.unix}"
    return address(args.host, args.port)


def client_endpoint(reactor: Any, args: argparse.Namespace) -> IStreamClientEndpoint:
    """The endpoint the arguments describe; ValueError for a bad description or TLS file.

    Plain TCP to an IP address (the default, 127.0.0.1) needs neither Twisted's endpoint
    module nor TLS, which take most of a one-shot command's start-up: they are imported
    only for the other cases.
    """
    endpoint: IStreamClientEndpoint
    if args.endpoint is None and args.unix is None and not args.tls and is_ip_address(args.host):
        return TCPAddressEndpoint(reactor, args.host, args.port, timeout=args.timeout)
    from twisted.internet import endpoints

    if args.endpoint is not None:
        try:
            endpoint = endpoints.clientFromString(reactor, args.endpoint)
        except (ValueError, TypeError, KeyError) as problem:
            raise ValueError(f"bad endpoint description {args.endpoint!r}: {problem}") from None
    elif args.unix is not None:
        endpoint = endpoints.UNIXClientEndpoint(reactor, args.unix, timeout=args.timeout)
    else:
        endpoint = endpoints.HostnameEndpoint(reactor, args.host, args.port, timeout=args.timeout)
    return endpoint if not args.tls else _wrap_tls(endpoint, args)


def _wrap_tls(endpoint: IStreamClientEndpoint, args: argparse.Namespace) -> IStreamClientEndpoint:
    """``endpoint`` wrapped in TLS as --cafile, --server-name, --cert and the others say."""
    from twisted.internet import endpoints

    settings = TLSSettings(
        server_name=args.server_name or (args.host if args.unix is None and args.endpoint is None else None),
        cafile=args.cafile,
        verify=not args.insecure_skip_verify,
        cert=args.cert,
        key=args.key,
    )
    return endpoints.wrapClientTLS(settings.creator(), endpoint)


def say(text: str) -> None:
    """One line on stdout, flushed so replies show while a script or pipe is still running."""
    print(text, flush=True)


def complain(text: str) -> None:
    """One ``tinytcp-client: ...`` line on stderr."""
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def shown(line: bytes) -> str:
    """A request line as printed in messages and the transcript (never a password)."""
    from tinytcp.auth.commands import loggable_line  # imports twisted.cred: not for plain runs

    return loggable_line(line).decode("utf-8", "backslashreplace")


def address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_failure(failure: Failure) -> str:
    """Why connecting failed, in a few words for the one stderr line."""
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.DNSLookupError):
        return "host not found"
    if failure.check(ConnectionClosed):
        return failure.value.tls_problem or "the server closed the connection at once"
    if failure.check(ConnectTimeout, ProtocolError, Refused):
        return str(failure.value)
    if failure.check(error.ConnectError) and isinstance(failure.value.osError, int):
        return os.strerror(failure.value.osError).lower()
    return failure.getErrorMessage()


class Session:
    """One run's bookkeeping: sends lines, prints replies in order, and keeps the exit status.

    Outcomes are reported in the order the requests were sent: each one waits on a
    chain through the earlier ones, so a line refused at once (a binary word with no
    code) is still reported after the replies to the lines before it.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        #: where lines and complaints go; the interactive prompt swaps in its own
        self.say: Callable[[str], None] = say
        self.complain: Callable[[str], None] = complain
        self.transcript: bool = args.transcript
        self.where = target(args)
        self.client: Client | None = None
        self.errors = 0
        #: the first failure that leaves replies unanswered (timeout, connection closed)
        self.failure: str | None = None
        self.quit_answered = False
        self.output_closed = False
        #: a signal is stopping the reactor: connections close, and that is no news
        self.interrupted = False
        self.closed_hook: Callable[[], object] | None = None
        self._reported: defer.Deferred[None] = defer.succeed(None)

    @property
    def status(self) -> int:
        if self.failure is not None:
            return FAILED
        return ERROR_REPLY if self.errors else OK

    def on_message(self, reply: Reply) -> None:
        """A message the server pushed on its own (MSG, the BYE of a shutdown)."""
        self._print(f"<~ {reply_line(reply)}" if self.transcript else reply_line(reply))

    def on_close(self, reason: Failure) -> None:
        if self.closed_hook is not None:
            self.closed_hook()

    def send(self, line: bytes) -> None:
        """Send one command line; blank lines are skipped (the server would not answer them)."""
        if self.client is None or self.failure is not None or parse_text_request(line) is None:
            return
        replied = self.client.request(line)
        self._reported.addCallback(lambda _: replied)
        self._reported.addCallbacks(partial(self._replied, line), partial(self._failed, line))

    def _replied(self, line: bytes, reply: Reply) -> None:
        if reply.code == Code.ERROR:
            self.errors += 1
        elif reply.code == Code.QUIT:
            self.quit_answered = True
        if self.transcript:
            self._print(f"-> {shown(line)}", f"<- {reply_line(reply)}")
        else:
            self._print(reply_line(reply))

    def _failed(self, line: bytes, failure: Failure) -> None:
        if self.transcript and self.failure is None:
            self._print(f"-> {shown(line)}")
        if failure.check(RequestError):
            self.errors += 1
            self.complain(str(failure.value))
        elif failure.check(ReplyTimeout):
            self._fail(f"no reply to {shown(line)!r} from {self.where} within {failure.value.timeout:g} s")
        elif failure.check(ConnectionClosed) and failure.value.tls_problem is not None:
            self._fail(f"connection to {self.where} failed: {failure.value.tls_problem}")
        elif failure.check(ConnectionClosed):
            self._fail(f"connection to {self.where} closed before the reply to {shown(line)!r}")
        else:
            self._fail(f"{shown(line)!r} failed: {failure.getErrorMessage()}")

    def _print(self, *lines: str) -> None:
        if self.output_closed:
            return
        try:
            for line in lines:
                self.say(line)
        except BrokenPipeError:
            self._output_gone()

    def _output_gone(self) -> None:
        """Whoever read stdout went away (``| head -1``): stop quietly, there is no one to tell."""
        self.output_closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the final flush at exit cannot fail again
        os.close(devnull)
        if self.failure is None:
            self.failure = "stdout closed"
        if self.client is not None:
            self.client.close()

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            if not self.interrupted:
                self.complain(message)

    def interrupt(self) -> None:
        self.interrupted = True

    async def finish(self) -> int:
        """Wait for every reply still due, hang up, and return the exit status."""
        await self._reported
        if self.client is not None:
            await self.client.close()
        return self.status


def from_asyncio(awaitable: Awaitable[Any]) -> defer.Deferred[Any]:
    """Await asyncio code (prompt_toolkit, stdin pipes) from a Deferred coroutine."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(awaitable))


class LineSource:
    """Command lines from a list, a file, or a pipe, read one at a time."""

    def __init__(self, lines: list[bytes] | None = None, stream: IO[bytes] | None = None) -> None:
        self._lines = iter(lines or ())
        self._stream = stream
        self._pipe: asyncio.StreamReader | None = None
        self._was_blocking = True

    async def open(self) -> None:
        """Read pipes, sockets and terminals without blocking the reactor; files are read directly."""
        if self._stream is None:
            return
        mode = os.fstat(self._stream.fileno()).st_mode
        if stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not self._stream.isatty()):
            return
        pipe = asyncio.StreamReader(limit=16 * 1024 * 1024)
        loop = asyncio.get_running_loop()
        # asyncio closes what it reads and makes it non-blocking: hand it a duplicate, and
        # close() restores the mode, which the shell shares when stdin is its terminal.
        self._was_blocking = os.get_blocking(self._stream.fileno())
        duplicate = os.fdopen(os.dup(self._stream.fileno()), "rb", buffering=0)
        try:
            await from_asyncio(loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(pipe), duplicate))
        except (OSError, ValueError):
            duplicate.close()
            return
        self._pipe = pipe

    def close(self) -> None:
        if self._pipe is not None and self._stream is not None:
            os.set_blocking(self._stream.fileno(), self._was_blocking)

    async def read(self, client: Client) -> bytes:
        """The next line, or b"" at the end of the input.

        Waiting on a pipe also ends when the connection closes: once the server is gone
        there is no point in waiting for more commands.
        """
        if self._pipe is not None:
            winner, line = await defer.race([from_asyncio(self._pipe.readline()), client.when_closed()])
            return line if winner == 0 else b""
        if self._stream is not None:
            return self._stream.readline()
        return next(self._lines, b"")


def strip_eol(line: bytes) -> bytes:
    """A line without its LF or CRLF."""
    return line.rstrip(b"\r\n")


async def scripted(session: Session, source: LineSource) -> int:
    """Send every line (pipelined), print replies as they come, then hang up.

    A line that comes after the connection has closed cannot be answered, which makes
    the run fail (status 2) like a reply that never came.
    """
    client = session.client
    assert client is not None
    await source.open()
    try:
        while session.failure is None:
            line = await source.read(client)
            if not line:
                break
            session.send(strip_eol(line))
        return await session.finish()
    finally:
        source.close()


class Terminal:
    """Prints above a running prompt, in order, and ends the prompt only after those prints.

    prompt_toolkit's ``run_in_terminal`` hides the prompt, prints, and redraws it with
    the text being typed, so a reply or pushed message never garbles that line.  Ending
    the prompt after the queued prints keeps a shutdown's BYE above the last prompt line.
    """

    def __init__(self, prompt: PromptSession[str]) -> None:
        self.prompt = prompt
        self._last: asyncio.Future[None] | None = None

    def _write(self, text: str, stderr: bool) -> None:
        from prompt_toolkit.application import run_in_terminal

        def write() -> None:
            print(text, file=sys.stderr if stderr else sys.stdout, flush=True)

        if self.prompt.app.is_running:
            self._last = asyncio.ensure_future(run_in_terminal(write, in_executor=False))
        else:
            write()

    def say(self, text: str) -> None:
        self._write(text, stderr=False)

    def complain(self, text: str) -> None:
        self._write(f"{PROG}: {text}", stderr=True)

    def end_prompt(self) -> None:
        """Leave the prompt (the connection is gone) once everything queued is printed."""

        def end(_: object = None) -> None:
            app = self.prompt.app
            if app.future is not None and not app.future.done():
                app.erase_when_done = not self.prompt.default_buffer.text  # no empty prompt left behind
                app.exit()

        if self._last is not None and not self._last.done():
            self._last.add_done_callback(end)
        else:
            end()


class Interrupted(Exception):
    """Ctrl+C at the prompt.

    prompt_toolkit's own KeyboardInterrupt would escape the asyncio loop (asyncio
    re-raises it out of the task) and stop the reactor with a traceback.
    """


def leave_on_ctrl_c() -> KeyBindings:
    """Ctrl+C leaves the prompt with :class:`Interrupted`, even with text on the line."""
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("c-c")
    def interrupt(event: KeyPressEvent) -> None:
        event.app.exit(exception=Interrupted(), style="class:aborting")

    return bindings


async def interactive(session: Session, args: argparse.Namespace) -> int:
    """Prompt with line editing and history; replies and pushed messages print above the prompt."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory

    client = session.client
    assert client is not None
    prompt: PromptSession[str] = PromptSession(history=InMemoryHistory(), key_bindings=leave_on_ctrl_c())
    terminal = Terminal(prompt)
    session.say, session.complain, session.closed_hook = terminal.say, terminal.complain, terminal.end_prompt
    greeting = f": {client.banner}" if client.banner else ""
    say(f"Connected to {session.where} ({args.mode} mode){greeting}. Ctrl+D or QUIT leaves.")
    while client.is_open and session.failure is None:
        try:
            text = await from_asyncio(prompt.prompt_async(PROMPT))
        except (EOFError, Interrupted):
            session.send(b"QUIT")
            break
        if text is None:
            break
        session.send(text.encode("utf-8", "surrogateescape"))
    status = await session.finish()
    if session.failure is None and not session.quit_answered:
        complain(f"the server at {session.where} closed the connection")
    return status


def line_source(args: argparse.Namespace) -> LineSource | None:
    """Where the commands come from; None means an interactive prompt."""
    if args.commands:
        return LineSource(lines=[os.fsencode(command) for command in args.commands])
    if args.script is not None and args.script != "-":
        return LineSource(stream=open(args.script, "rb"))
    if args.script == "-" or not sys.stdin.isatty():
        return LineSource(stream=sys.stdin.buffer)
    return None


async def run_session(reactor: Any, args: argparse.Namespace) -> int:
    """Connect, run the chosen mode, and return the exit status."""
    try:
        source = line_source(args)
    except OSError as problem:
        complain(f"cannot read {args.script}: {problem.strerror}")
        return FAILED
    session = Session(args)
    reactor.addSystemEventTrigger("before", "shutdown", session.interrupt)
    try:
        endpoint = client_endpoint(reactor, args)
    except (TLSConfigError, ValueError) as problem:
        complain(str(problem))
        return FAILED
    if args.insecure_skip_verify:
        complain("warning: --insecure-skip-verify: the server's certificate is not checked")
    try:
        session.client = await connect(
            endpoint,
            args.mode,
            on_message=session.on_message,
            on_close=session.on_close,
            timeout=args.timeout,
            reactor=reactor,
        )
    except Exception:
        failure = Failure()
        hint = "; if it is a TLS listener, add --tls" if failure.check(ConnectTimeout) and not args.tls else ""
        complain(f"cannot connect to {session.where}: {connect_failure(failure)}{hint}")
        return FAILED
    if session.transcript and session.client.banner is not None:
        say(f"<~ WELCOME {session.client.banner}")
    if source is None:
        return await interactive(session, args)
    return await scripted(session, source)


def run(reactor: Any, job: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run the reactor until ``job`` returns an exit status.

    A signal (Ctrl+C outside the prompt, SIGTERM) stops the reactor before the job is
    done; that run ends with INTERRUPTED, whatever the job makes of its closed connection.
    """
    outcome: list[int] = []
    interrupted: list[bool] = []

    def crashed(failure: Failure) -> int:
        failure.printTraceback(sys.stderr)
        return FAILED

    def done(status: int) -> None:
        outcome.append(status)
        try:
            reactor.stop()
        except error.ReactorNotRunning:
            pass

    def start() -> None:
        defer.Deferred.fromCoroutine(job()).addErrback(crashed).addCallback(done)

    def stopping() -> None:
        if not outcome:
            interrupted.append(True)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
    return INTERRUPTED if interrupted or not outcome else outcome[0]


def needs_tls(args: argparse.Namespace) -> bool:
    """Whether the run may speak TLS: ``--tls``, or an endpoint description (``tls:``, ``ssl:``)."""
    return args.tls or args.endpoint is not None


def install_reactor(tls: bool = True) -> Any:
    """Twisted's asyncio reactor, which prompt_toolkit needs; must come before any reactor import.

    With ``tls=False`` the reactor's modules are imported as if pyOpenSSL were not
    installed: Twisted's TCP support imports it whenever it can (about a quarter of a
    one-shot command's start-up), only to offer ``startTLS`` and ``connectSSL``, which a
    plain run never calls.  TLS itself (``wrapClientTLS``) does not depend on that, and
    pyOpenSSL can still be imported afterwards.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from tinytcp.lean import without_openssl

        with without_openssl(not tls):
            from twisted.internet import asyncioreactor

            asyncioreactor.install()
    from twisted.internet import reactor

    return reactor


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the session, and return the exit status."""
    args = parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    reactor = install_reactor(tls=needs_tls(args))
    return run(reactor, partial(run_session, reactor, args))


def console_main() -> None:
    """The ``tinytcp-client`` console script and ``python -m tinytcp.client``."""
    sys.exit(main())
