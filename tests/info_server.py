"""A web port whose text protocol also answers ``INFO clients``, as a later tinytcp will.

The page takes its status from INFO when HELP lists it; this server lets the browser tests
see that path: ``python -m tests.info_server`` prints the port it listens on, then serves.
"""

from __future__ import annotations

from twisted.internet import reactor

from tinytcp.server.state import Server, Settings
from tinytcp.server.text import TextProtocol
from tinytcp.web.site import make_site

HELP = b"HELP TIME ECHO REVERSE HELP NICK SAY WHO INFO QUIT\r\n"


class InfoText(TextProtocol):
    """Text mode plus ``INFO clients`` (one line of key:value pairs) and HELP listing it."""

    def dataReceived(self, data: bytes) -> None:
        line = data.strip().upper()
        if line == b"HELP":
            self.transport.write(HELP)
        elif line == b"INFO CLIENTS":
            count = len(self.server.connections)
            self.transport.write(b"INFO clients:%d max:%d\r\n" % (count, self.server.settings.max_connections))
        else:
            super().dataReceived(data)


def main() -> None:
    server = Server(Settings(), reactor=reactor)
    port = reactor.listenTCP(0, make_site(server, reactor=reactor, protocol=InfoText), interface="127.0.0.1")
    print(f"web mode listening on tcp:127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
