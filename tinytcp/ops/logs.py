"""The log observer ``twistd tinytcp`` runs with: text or one JSON object a line, minus port noise.

twistd builds its observer from ``--logfile`` after the plugin has parsed its options; the
plugin hands twistd a factory through twistd's own ``logger`` setting instead (the value
``twistd --logger`` sets), which keeps twistd's rules for where logs go (``--logfile``, stdout
under ``-n``, ``twistd.log`` for a daemon, SIGUSR1 to rotate) and changes two things:

- ``--log-format json`` writes Twisted's JSON events, one per line, for log shippers;
- Twisted's own "<Factory> starting on <port>" and "(TCP Port <port> Closed)" lines are
  dropped: tinytcp logs every address it listens on itself, in a form clients can use.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, MutableMapping
from functools import partial
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    PredicateResult,
    eventAsText,
    formatEvent,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import logfile
from twisted.python.usage import UsageError

LOG_FORMATS = ("text", "json")

#: what twistd's daemon logs to when --logfile is not given
DEFAULT_LOGFILE = "twistd.log"

_PORT_NOISE = re.compile(r".+ starting on \S+|\((?:TCP |UNIX |SSL )?Port \S+ Closed\)")


def drop_port_noise(event: LogEvent) -> PredicateResult:
    """Twisted's listening-port lines, which repeat tinytcp's own "listening on" line."""
    if event.get("log_namespace") == "log_legacy" and _PORT_NOISE.fullmatch(str(event.get("log_text", ""))):
        return PredicateResult.no
    return PredicateResult.maybe


def open_log(path: str, daemon: bool) -> IO[Any]:
    """Where twistd would log: stdout for ``-`` or a foreground run without ``--logfile``,
    else a file that rotates at 1 MB and on SIGUSR1 (twistd's own rules)."""
    if path == "-" or (not daemon and not path):
        if daemon:
            raise SystemExit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    log_file = logfile.LogFile.fromFullPath(path or DEFAULT_LOGFILE)
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return log_file  # type: ignore[return-value]


def make_observer(log_format: str, path: str, daemon: bool) -> ILogObserver:
    """The observer for ``--log-format``; called by twistd once it starts logging."""
    out = open_log(path, daemon)
    if log_format == "json":
        json_observer = jsonFileLogObserver(out, recordSeparator="")

        def observer(event: LogEvent) -> None:
            # the rendered line too, so a shipper need not re-implement Twisted's formatting
            json_observer({**event, "text": formatEvent(event)})
    else:
        observer = textFileLogObserver(out)
    return FilteringLogObserver(observer, [drop_port_noise])  # type: ignore[arg-type]


#: the observer twistd_observer builds; set by install (twistd takes a factory by dotted name only)
_chosen: list[Callable[[], ILogObserver]] = []


def twistd_observer() -> ILogObserver:
    """The factory install names to twistd as its ``logger``."""
    return _chosen[-1]()


def worker_observer() -> ILogObserver:
    """A ``--workers`` worker's observer: each event's text alone on stdout, a pipe to the
    supervisor, which adds the time, the worker's number and pid, and applies --log-format."""

    def format_event(event: LogEvent) -> str:
        return eventAsText(event, includeTimestamp=False, includeSystem=False) + "\n"

    return FilteringLogObserver(FileLogObserver(sys.stdout, format_event), [drop_port_noise])


def install(twistd_config: MutableMapping[str, Any] | None, log_format: str, worker: bool = False) -> None:
    """Have twistd log through :func:`make_observer` (:func:`worker_observer` in a worker),
    unless ``--logger`` or ``--syslog`` chose another destination (JSON then has no file of
    ours to go to, and says so)."""
    if twistd_config is None:
        return
    if worker:
        _chosen.append(worker_observer)
        twistd_config["logger"] = f"{__name__}.{twistd_observer.__name__}"
        return
    if twistd_config.get("logger") or twistd_config.get("syslog"):
        if log_format == "json":
            raise UsageError("--log-format json cannot be combined with twistd's --logger or --syslog")
        return
    _chosen.append(
        partial(make_observer, log_format, twistd_config.get("logfile") or "", not twistd_config.get("nodaemon"))
    )
    twistd_config["logger"] = f"{__name__}.{twistd_observer.__name__}"
