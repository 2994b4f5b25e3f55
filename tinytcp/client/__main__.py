"""``python -m tinytcp.client``: the same command line as ``tinytcp-client``."""

from tinytcp.client.cli import console_main

console_main()
