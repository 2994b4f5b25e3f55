"""Accounts in an SQLite file, passwords hashed with bcrypt.

Every method blocks (disk, and bcrypt's deliberately slow hashing), so the server calls
them from a thread pool only (``tinytcp.auth.cred``); each thread gets its own SQLite
connection, as sqlite3 connections are not shared across threads.  User names are unique
ignoring ASCII case, like nicks.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import bcrypt

#: bcrypt's cost; 12 is about a quarter of a second per hash on a current core
DEFAULT_ROUNDS = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    hash BLOB NOT NULL,
    created REAL NOT NULL
)
"""


class NameTaken(Exception):
    """REGISTER of a user name that exists (ignoring case)."""


class AccountStore:
    """The accounts table of one SQLite file, created on first use."""

    def __init__(self, path: str, rounds: int = DEFAULT_ROUNDS) -> None:
        self.path = path
        self.rounds = rounds
        self._local = threading.local()
        # a hash to check against when the user does not exist, so an unknown user costs
        # as much time as a wrong password and the two cannot be told apart
        self._decoy = bcrypt.hashpw(b"decoy password", bcrypt.gensalt(rounds))
        with self._connection() as db:
            db.execute(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            self._local.db = db
        return db

    def names(self) -> list[str]:
        """Every registered user name, as registered."""
        return [row[0] for row in self._connection().execute("SELECT name FROM accounts")]

    def register(self, name: str, password: bytes) -> str:
        """Create the account; raises NameTaken if the name exists (ignoring case)."""
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(self.rounds))
        try:
            with self._connection() as db:
                db.execute("INSERT INTO accounts (name, hash, created) VALUES (?, ?, ?)", (name, hashed, time.time()))
        except sqlite3.IntegrityError:
            raise NameTaken(name) from None
        return name

    def check(self, name: str, password: bytes) -> str | None:
        """The user name as registered when the password is right; None otherwise."""
        row = self._connection().execute("SELECT name, hash FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            bcrypt.checkpw(password, self._decoy)
            return None
        return row[0] if bcrypt.checkpw(password, row[1]) else None
