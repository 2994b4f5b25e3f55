"""Accounts in a running server: the thread pool runner, the SQLite store opened at start.

The store is opened when the service starts, after twistd has moved to its working folder
(``--rundir``), so a relative ``--accounts`` path lands there.  Reading the registered
names then, once, is the only database work done on the reactor thread, before any client
is served.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from twisted.application.service import Service
from twisted.internet import threads
from twisted.logger import Logger

from tinytcp.auth.commands import Accounts, Policy
from tinytcp.auth.cred import AccountChecker, known_names, portal_for

log = Logger(namespace="tinytcp")

DEFAULT_ACCOUNTS = "accounts.sqlite3"


def thread_runner(reactor: Any) -> Any:
    """``run(f, *args) -> Deferred``: f in the reactor's thread pool."""
    return partial(threads.deferToThreadPool, reactor, reactor.getThreadPool())


class AccountsService(Service):
    """Opens the account store (or takes the ``--auth`` checkers) and hands them to ``accounts``."""

    def __init__(self, accounts: Accounts, path: str | None, rounds: int, checkers: list[Any] | None = None) -> None:
        self.accounts = accounts
        self.path = path
        self.rounds = rounds
        self.checkers = checkers or []

    def startService(self) -> None:
        super().startService()
        accounts = self.accounts
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
    """Accounts with no checker yet: AccountsService supplies it when the server starts."""
    return Accounts(portal_for([]), policy, reactor, thread_runner(reactor))
