"""Twisted's networking modules without pyOpenSSL, for a process that will not use TLS.

Twisted's TCP module and its endpoint parsers import pyOpenSSL (and ``cryptography``)
whenever it is installed, to offer ``startTLS``, ``connectSSL`` and ``ssl:`` endpoints; that
is about 13 MiB of memory and a tenth of a second of start-up that a plain TCP server or a
one-shot client never uses.  Importing them inside :func:`without_openssl` leaves those
offers out; pyOpenSSL itself can still be imported afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_openssl(active: bool = True) -> Iterator[None]:
    """Within this block, ``import OpenSSL`` fails as if it were not installed (unless it
    already was imported, or ``active`` is false)."""
    blocked = active and "OpenSSL" not in sys.modules
    if blocked:
        sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        if blocked and sys.modules.get("OpenSSL", False) is None:
            del sys.modules["OpenSSL"]
