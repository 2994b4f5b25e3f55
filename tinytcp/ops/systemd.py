"""systemd socket activation: the sockets systemd (or ``systemd-socket-activate``) passes.

Twisted's ``systemd:`` endpoints read ``LISTEN_FDS`` once, when ``twisted.internet.endpoints``
is first imported, and keep no descriptor unless ``LISTEN_FDNAMES`` names every one of them.
systemd's own units always set it, but ``systemd-socket-activate`` without ``--fdname`` does
not; libsystemd's ``sd_listen_fds_with_names`` then calls each descriptor ``unknown``, and
:func:`name_unnamed_sockets` does the same, so ``systemd:domain=INET:index=0`` works there too.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def name_unnamed_sockets(environ: MutableMapping[str, str] | None = None) -> None:
    """Give every descriptor passed to this process the name ``unknown`` when systemd named none.

    Call it before ``twisted.internet.endpoints`` is imported; it changes nothing when the
    sockets are not for this process or are already named.
    """
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()) or "LISTEN_FDNAMES" in env:
        return
    try:
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return
    if count > 0:
        env["LISTEN_FDNAMES"] = ":".join(["unknown"] * count)
