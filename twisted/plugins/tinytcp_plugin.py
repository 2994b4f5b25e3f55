"""twistd's door into tinytcp: ``twistd -n tinytcp --port 40000``."""

from twisted.application.service import ServiceMaker

from tinytcp.ops.systemd import name_unnamed_sockets

# twistd imports this module before anything imports twisted.internet.endpoints, which is
# where Twisted reads the sockets systemd passed (tinytcp/ops/systemd.py)
name_unnamed_sockets()

tinytcp = ServiceMaker("tinytcp", "tinytcp.server.tap", "A small TCP service: text lines and binary frames.", "tinytcp")
