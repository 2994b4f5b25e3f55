"""Accounts: REGISTER, LOGIN and LOGOUT, on ``twisted.cred``.

``store`` keeps accounts in SQLite with bcrypt hashes, ``cred`` wraps it in a checker and a
realm (so any ``--auth`` checker from ``twisted.cred.strcred`` can stand in for it),
``limiter`` slows and limits failed logins, and ``commands`` adds the commands to the core.
Hashing and database work run in threads, never on the reactor thread.
"""
