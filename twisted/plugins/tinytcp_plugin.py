"""twistd's door into tinytcp: ``twistd -n tinytcp --port 40000``."""

from twisted.application.service import ServiceMaker

tinytcp = ServiceMaker("tinytcp", "tinytcp.server.tap", "A small TCP service: text lines and binary frames.", "tinytcp")
