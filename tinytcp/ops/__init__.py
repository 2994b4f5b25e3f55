"""Running tinytcp as a daemon: start-up checks, status (INFO), metrics, config file, logging.

Nothing here is on the per-request path: the server counts with plain integer increments
(:mod:`tinytcp.ops.status`) and this package only reads those counters when asked.
"""
