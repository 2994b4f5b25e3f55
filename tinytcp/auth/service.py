"""Accounts in a running server: the hashing thread pool, the SQLite store opened at start.

Hashing gets its own pool, one thread fewer than the machine has cores (at least one), so
that a burst of LOGINs queues for those threads and never takes the reactor's core: other
clients keep their round trips while bcrypt works.

The store is opened when the service starts, after twistd has moved to its working folder
(``--rundir``), so a relative ``--accounts`` path lands there.  Reading the registered
names then, once, is the only database work done on the reactor thread, before any client
is served.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from tinytcp.auth.commands import Accounts, Policy
from tinytcp.auth.cred import AccountChecker, known_names, portal_for

log = Logger(namespace="tinytcp")

DEFAULT_ACCOUNTS = "accounts.sqlite3"


def hashing_threads() -> int:
    """Threads for hashing: every core but the reactor's, and at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


def pool_runner(reactor: Any, pool: ThreadPool) -> Any:
    """``run(f, *args) -> Deferred``: f in ``pool``."""
    return partial(threads.deferToThreadPool, reactor, pool)


class AccountsService(Service):
    """Opens the account store (or takes the ``--auth`` checkers) and hands them to ``accounts``."""

    def __init__(self, accounts: Accounts, path: str | None, rounds: int, checkers: list[Any] | None = None) -> None:
        self.accounts = accounts
        self.path = path
        self.rounds = rounds
        self.checkers = checkers or []
        self.pool = ThreadPool(0, hashing_threads(), "tinytcp-accounts")

    def startService(self) -> None:
        super().startService()
        accounts = self.accounts
        self.pool.start()
        # stopped with the reactor, not with this service: LOGINs still being answered
        # during the shutdown drain need their threads
        reactor = accounts.reactor
        reactor.addSystemEventTrigger("during", "shutdown", self.pool.stop)  # type: ignore[attr-defined]
        accounts.run = pool_runner(reactor, self.pool)
        if self.checkers:
            accounts.portal = portal_for(self.checkers)
            for checker in self.checkers:
                accounts.reserved.update(name.lower() for name in known_names(checker))
            log.info("accounts: checked by --auth ({count} user names known)", count=len(accounts.reserved))
            return
        from tinytcp.auth.store import AccountStore

        store = AccountStore(self.path or DEFAULT_ACCOUNTS, self.rounds)
        checker = AccountChecker(store, accounts.run)
        accounts.portal = portal_for([checker])
        accounts.register = store.register
        accounts.reserved.update(name.lower() for name in known_names(checker))
        log.info("accounts: {path} ({count} users)", path=store.path, count=len(accounts.reserved))


def make_accounts(policy: Policy, reactor: Any) -> Accounts:
    """Accounts with no checker or threads yet: AccountsService supplies them when the server starts."""
    return Accounts(portal_for([]), policy, reactor, _not_started)


def _not_started(f: Any, *args: Any) -> defer.Deferred[Any]:
    return defer.fail(RuntimeError("the accounts service has not started"))
