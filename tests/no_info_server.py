"""A web port whose text protocol knows no INFO, as tinytcp before the status command.

The page takes its status from INFO when HELP lists it, and from WHO counts otherwise; this
server lets the browser tests see the second path: ``python -m tests.no_info_server`` prints
the port it listens on, then serves.
"""

from __future__ import annotations

from twisted.internet import reactor

from tinytcp.server.state import Server, Settings
from tinytcp.server.text import TextProtocol
from tinytcp.web.site import make_site

HELP = b"HELP TIME ECHO REVERSE HELP NICK SAY WHO QUIT\r\n"


class OlderText(TextProtocol):
    """Text mode whose HELP does not list INFO."""

    def dataReceived(self, data: bytes) -> None:
        if data.strip().upper() == b"HELP":
            self.transport.write(HELP)
        else:
            super().dataReceived(data)


def main() -> None:
    server = Server(Settings(), reactor=reactor)
    port = reactor.listenTCP(0, make_site(server, reactor=reactor, protocol=OlderText), interface="127.0.0.1")
    print(f"web mode listening on tcp:127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
