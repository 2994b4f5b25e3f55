"""``--config FILE``: every ``twistd tinytcp`` option in a TOML file, checked like the command line.

The keys are the long option names (``max-line = 65536``); values go through the same
parsers as the command line, so a bad value reads the same, prefixed by the file and line.
The command line overrides the file: the caller merges, this module only reads and checks.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.python.usage import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Setting:
    """One value from the file and where it was written, for messages."""

    value: Any
    where: str


def key_lines(text: str) -> dict[str, int]:
    """The line of each top-level ``key = ...`` (tomllib keeps no positions)."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"""\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""", line)
        if match:
            lines.setdefault(next(group for group in match.groups() if group is not None), number)
    return lines


def load(
    path: str,
    parsers: Mapping[str, Callable[[Any], Any] | None],
    repeatable: frozenset[str] = frozenset(),
) -> dict[str, Setting]:
    """Read ``path`` and check every key against ``parsers`` (key -> parser; None: a flag).

    Keys in ``repeatable`` take one value or a list.  Any problem raises UsageError naming
    the file, the line and the key.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"--config: cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
        table = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    lines = key_lines(text)
    settings: dict[str, Setting] = {}
    for key, value in table.items():
        where = f"{path}:{lines.get(key, '?')}"
        if key not in parsers:
            known = ", ".join(sorted(parsers))
            raise UsageError(f"{where}: unknown key {key!r} (the keys are the long option names: {known})")
        parse = parsers[key]
        try:
            if parse is None:
                if not isinstance(value, bool):
                    raise UsageError(f"--{key}: {value!r} is not true or false")
                settings[key] = Setting(value, where)
            elif key in repeatable:
                values = value if isinstance(value, list) else [value]
                if not values:
                    raise UsageError(f"--{key}: the list is empty")
                settings[key] = Setting([parse(item) for item in values], where)
            else:
                settings[key] = Setting(parse(value), where)
        except UsageError as e:
            raise UsageError(f"{where}: {str(e).removeprefix('--')}") from None
    return settings
