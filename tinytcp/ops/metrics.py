"""``--metrics-port``: the INFO figures at ``/metrics``, in Prometheus' text format.

The figures are read from :func:`tinytcp.ops.status.collect` when Prometheus scrapes, in the
reactor thread (prometheus_client's own Twisted resource renders in a thread pool, which
would read the connection set while the reactor changes it), so serving metrics adds nothing
to the request path.  There is no latency histogram: timing every request would cost more
than the 3% the counters are allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from tinytcp.ops import status
from tinytcp.ops.startup import StartupError
from tinytcp.ops.status import Server

#: what pip installs for --metrics-port (setup.cfg's extra of the same name)
METRICS_EXTRA = "tinytcp[metrics]"


def require_prometheus_client() -> None:
    """Fail with what to install when prometheus_client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise StartupError(f"--metrics-port needs prometheus_client; pip install '{METRICS_EXTRA}'") from None


class StatusCollector:
    """A prometheus_client collector over one Server's INFO fields."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        fields = status.collect(self.server)
        server, clients, stats, chat = fields["server"], fields["clients"], fields["stats"], fields["chat"]
        yield InfoMetricFamily(
            "tinytcp_build",
            "tinytcp's version, and the Twisted, Python and reactor it runs on",
            value={key: str(server[key]) for key in ("version", "twisted", "python", "reactor")},
        )
        yield GaugeMetricFamily("tinytcp_uptime_seconds", "Seconds since the server started", server["uptime_seconds"])
        connected = GaugeMetricFamily("tinytcp_connected_clients", "Connections open now", labels=["mode"])
        for mode in ("text", "binary"):
            connected.add_metric([mode], clients[f"connected_{mode}"])
        yield connected
        yield GaugeMetricFamily("tinytcp_max_connections", "The --max-connections setting", clients["max_connections"])
        yield CounterMetricFamily("tinytcp_connections", "Connections served since start", clients["connections_total"])
        yield CounterMetricFamily(
            "tinytcp_connections_refused", "Connections refused with BUSY (--max-connections)", clients["refused_busy"]
        )
        closed = CounterMetricFamily(
            "tinytcp_connections_closed_by_limit", "Connections closed for passing a limit", labels=["limit"]
        )
        for name in status.LIMITS:
            closed.add_metric([name.lower()], clients[f"closed_{name.lower()}"])
        yield closed
        requests = CounterMetricFamily("tinytcp_requests", "Requests answered, by command", labels=["command"])
        errors = CounterMetricFamily("tinytcp_errors", "ERROR replies sent, by name", labels=["name"])
        for key, value in stats.items():
            if key.startswith("requests_") and key != "requests_total":
                requests.add_metric([key.removeprefix("requests_")], value)
            elif key.startswith("errors_"):
                errors.add_metric([key.removeprefix("errors_")], value)
        yield requests
        yield errors
        yield CounterMetricFamily(
            "tinytcp_received_bytes", "Bytes received on TCP and TLS connections", stats["bytes_in"]
        )
        yield CounterMetricFamily("tinytcp_sent_bytes", "Bytes sent on TCP and TLS connections", stats["bytes_out"])
        yield CounterMetricFamily(
            "tinytcp_backpressure_pauses",
            "Times the server stopped reading from a client that did not read its replies",
            stats["backpressure_pauses"],
        )
        yield CounterMetricFamily(
            "tinytcp_slow_consumers", "Clients disconnected as slow consumers", stats["slow_consumers"]
        )
        yield GaugeMetricFamily("tinytcp_chat_members", "Clients in the chat room", chat["members"])
        yield GaugeMetricFamily("tinytcp_chat_nicks", "Chat members with a nick", chat["nicks"])
        if "redis" in chat:  # --redis: the room is shared with other nodes
            yield GaugeMetricFamily(
                "tinytcp_redis_up", "1 while the shared chat room's Redis is reachable", int(chat["redis"] == "up")
            )
            yield GaugeMetricFamily(
                "tinytcp_chat_room_others",
                "Members on the other nodes of the room (last heartbeat)",
                chat["room_others"],
            )


class MetricsPage(Resource):
    """``GET /metrics``, rendered in the reactor thread."""

    isLeaf = True

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class QuietSite(Site):
    """A Site that logs no access line per scrape (Prometheus scrapes every few seconds)."""

    noisy = False

    def log(self, request: Request) -> None:
        """Scrapes are not logged."""


def metrics_site(server: Server) -> Site:
    """The web site for --metrics-port: ``/metrics`` only."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(server))  # type: ignore[arg-type]
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    return QuietSite(root)
