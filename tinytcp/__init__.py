"""tinytcp: a small Twisted TCP service speaking one command set over text lines and binary frames."""

__version__ = "0.1"
