"""Start-up checks: every reason the server cannot start becomes one line that names the option.

An operator who gets a port, a number or a TLS file wrong should read what to fix, not a
traceback or Twisted's parser internals.  The option parsers here are shared by the command
line (:mod:`tinytcp.server.tap`) and the config file (:mod:`tinytcp.ops.config`), so a bad
value reads the same from either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from twisted.python.usage import UsageError

#: what ``pip install`` needs for ``ssl:`` endpoints (setup.cfg's extra of the same name)
TLS_EXTRA = "tinytcp[tls]"

#: the largest payload length a binary frame header can announce
MAX_FRAME_LIMIT = 0xFFFFFFFF


class StartupError(Exception):
    """The server cannot start; the message is the one line an operator is shown."""


def whole_number(option: str, low: int = 1, high: int | None = None) -> Callable[[Any], int]:
    """A parser for an integer option of at least ``low`` (and at most ``high``) that names the option."""

    def parse(value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        if number is None or number < low or (high is not None and number > high):
            bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise UsageError(f"--{option}: {value!r} is not a whole number {bounds}")
        return number

    return parse


def seconds(option: str, what: str = "a number of seconds") -> Callable[[Any], float]:
    """A parser for a finite, non-negative number (of seconds, by default) that names the option.

    NaN and infinities are refused: NaN compares false with everything, so a NaN timeout
    would silently disable the checks that use it.
    """

    def parse(value: Any) -> float:
        number = math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if not (0 <= number < math.inf):
            raise UsageError(f"--{option}: {value!r} is not {what} (0 or more, finite)")
        return number

    return parse


#: a bare port number listens on loopback only; see tinytcp.server.service.endpoint_description
BARE_PORT = re.compile(r"\d+")


def check_endpoint(option: str, value: str, description: str, reactor: Any) -> None:
    """Parse an endpoint description now, so that a mistake is a usage error naming the option.

    Twisted loads TLS keys and certificates while parsing ``ssl:`` descriptions, so missing or
    unreadable TLS files are caught here too, before the server forks into the background.
    """
    if BARE_PORT.fullmatch(value) and int(value) > 65535:
        raise UsageError(f"--{option}: {value!r} is not a port number (0-65535)")
    from twisted.internet import endpoints  # after the reactor (tap.py decides about TLS first)

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:  # Twisted's parsers raise anything from TypeError to OpenSSL errors
        raise UsageError(f"--{option} {value!r}: {endpoint_problem(description, e)}") from None


def endpoint_problem(description: str, error: Exception) -> str:
    """Why Twisted could not parse ``description``, in an operator's words."""
    kind = description.split(":", 1)[0].lower()
    text = str(error)
    if isinstance(error, ImportError):
        return f"TLS support is not installed; pip install '{TLS_EXTRA}' ({text})"
    if isinstance(error, FileNotFoundError):
        name = error.filename or "?"
        if kind == "ssl" and "privatekey=" not in description.lower() and str(name).endswith("server.pem"):
            return "ssl: needs privateKey=FILE (a PEM key; add certKey=FILE when the certificate is elsewhere)"
        return f"no such file: {name}"
    if isinstance(error, (PermissionError, IsADirectoryError)):
        return f"cannot read {error.filename}: {error.strerror}"
    if kind == "ssl" and type(error).__module__.startswith("OpenSSL"):
        return f"privateKey/certKey is not a PEM key and certificate ({text})"
    if kind == "systemd" and isinstance(error, (IndexError, KeyError)):
        return (
            "systemd passed no such socket (LISTEN_FDS/LISTEN_FDNAMES); run it from a .socket unit, "
            "or under systemd-socket-activate with --fdname=NAME"
        )
    if isinstance(error, TypeError):
        unexpected = re.search(r"unexpected keyword argument '([^']+)'", text)
        if unexpected:
            return f"{kind} endpoints have no parameter {unexpected.group(1)!r}"
        if "multiple values" in text:
            return r"too many ':' (escape the colons inside a value, e.g. tcp6:40000:interface=\:\:1)"
    if isinstance(error, ValueError):
        unknown = re.match(r"Unknown endpoint type: '([^']*)'", text)
        if unknown:
            return f"unknown endpoint type {unknown.group(1)!r} (a port number, or tcp:, tcp6:, ssl:, unix:, systemd:)"
        literal = re.match(r"invalid literal for int\(\) with base 10: (.*)", text)
        if literal:
            return f"{literal.group(1)} is not a number"
    return f"{type(error).__name__}: {text}"


def choice(option: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    """A parser for an option that takes one of a few words."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise UsageError(f"--{option}: {value!r} is not one of {', '.join(choices)}")
        return str(value)

    return parse


def one_line_text(option: str) -> Callable[[Any], str]:
    """A parser for text sent inside one reply line (the banner): no CR or LF, no other control bytes."""

    def parse(value: Any) -> str:
        if not isinstance(value, str) or any(ord(c) < 32 or c == "\x7f" for c in value):
            raise UsageError(f"--{option}: {value!r} is not one line of printable text")
        return value

    return parse
