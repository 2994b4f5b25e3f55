"""twistd's name for tinytcp's reactor: ``twistd --reactor=tinytcp``."""

from twisted.application.reactors import Reactor

tinytcp = Reactor(
    "tinytcp", "tinytcp.server.reactor", "epoll with a lazy per-event legacy log context (tinytcp's default)"
)
