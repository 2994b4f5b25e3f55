"""tinytcp's accounts as ``twisted.cred`` pieces: a checker over the SQLite store and a realm.

The portal asks a checker whether a user name and password match and the realm for that
user's avatar, an :class:`IAccount`.  Any checker that takes ``IUsernamePassword``, such as
the ``file:`` and ``memory:`` ones of ``twisted.cred.strcred`` (``--auth``), can replace
:class:`AccountChecker`; only the SQLite store can register new accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.cred import error as cred_error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

if TYPE_CHECKING:
    from tinytcp.auth.store import AccountStore

#: runs a blocking function in a thread: ``run(f, *args) -> Deferred`` (deferToThreadPool)
Runner = Callable[..., "defer.Deferred[Any]"]


class IAccount(Interface):
    """A logged-in user, as the realm hands it out."""

    name = Attribute("the user name as registered (bytes)")


@implementer(IAccount)
class Account:
    def __init__(self, name: bytes) -> None:
        self.name = name


@implementer(IRealm)
class AccountRealm:
    """Every authenticated user name gets an Account; there is nothing to release on logout."""

    def requestAvatar(self, avatarId: bytes, mind: object, *interfaces: Any) -> tuple[Any, Account, Callable[[], None]]:
        if IAccount not in interfaces:
            raise NotImplementedError("tinytcp's realm only hands out IAccount")
        return IAccount, Account(avatarId), lambda: None


@implementer(ICredentialsChecker)
class AccountChecker:
    """Checks user names and passwords against the SQLite store, in a thread."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, store: AccountStore, run: Runner) -> None:
        self.store = store
        self.run = run

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[bytes]:
        name = credentials.username.decode("ascii", "replace")
        checking = self.run(self.store.check, name, credentials.password)

        def checked(found: str | None) -> bytes:
            if found is None:
                raise cred_error.UnauthorizedLogin()
            return found.encode("ascii")

        return checking.addCallback(checked)


def portal_for(checkers: list[Any]) -> Portal:
    """A portal on tinytcp's realm with these checkers."""
    return Portal(AccountRealm(), checkers)


def known_names(checker: Any) -> list[bytes]:
    """The user names a checker knows, where it can list them (for reserving them against NICK).

    The SQLite store lists its own; of the strcred checkers, ``memory:`` keeps a dict and
    ``file:`` re-reads its file (``_loadCredentials``, Twisted's name for it since 2002).
    Names a checker cannot list are reserved once their user has logged in.
    """
    if isinstance(checker, AccountChecker):
        return [name.encode("ascii") for name in checker.store.names()]
    users = getattr(checker, "users", None)
    if isinstance(users, dict):
        return [name if isinstance(name, bytes) else name.encode("utf-8") for name in users]
    load = getattr(checker, "_loadCredentials", None)
    if load is not None:
        try:
            return [name for name, _ in load()]
        except (OSError, cred_error.UnauthorizedLogin):
            return []
    return []
