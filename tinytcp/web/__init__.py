"""The web page: a chat and command console for people who do not use telnet (``--web-port``)."""
