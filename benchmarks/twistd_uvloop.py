"""twistd with Twisted's asyncio reactor running on uvloop instead of asyncio's own loop.

    python benchmarks/twistd_uvloop.py -n tinytcp [options]     # pip install uvloop

Sets uvloop's event loop policy before twistd installs its reactor, then runs twistd as
``twistd --reactor=asyncio`` (added when no ``--reactor`` is given; any other reactor is
refused).  Twisted's ``AsyncioSelectorReactor`` creates its loop with
``asyncio.new_event_loop()``, which then returns a ``uvloop.Loop``.  Once the reactor is
installed this prints, on stderr, the reactor class and the class of its
``_asyncioEventloop`` (``twistd_uvloop: reactor ... on uvloop.Loop``), and exits with an
error if that loop is not uvloop's.  Benchmark tool only: nothing in tinytcp depends on it.
"""

from __future__ import annotations

import asyncio
import sys

try:
    import uvloop
except ImportError:
    sys.exit("twistd_uvloop: uvloop is not installed (pip install uvloop)")

from twisted.internet import asyncioreactor


def main() -> None:
    args = sys.argv[1:]
    chosen = [a for a in args if a.startswith("--reactor") or a == "-r"]
    if not chosen:
        args.insert(0, "--reactor=asyncio")
    elif chosen != ["--reactor=asyncio"]:
        sys.exit("twistd_uvloop: only --reactor=asyncio runs on uvloop")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    install = asyncioreactor.install

    def install_and_check(eventloop: object = None) -> None:
        install(eventloop)
        from twisted.internet import reactor

        loop = reactor._asyncioEventloop  # type: ignore[attr-defined]
        print(
            f"twistd_uvloop: reactor {type(reactor).__module__}.{type(reactor).__qualname__}"
            f" on {type(loop).__module__}.{type(loop).__qualname__} (uvloop {uvloop.__version__})",
            file=sys.stderr,
            flush=True,
        )
        if not isinstance(loop, uvloop.Loop):
            sys.exit("twistd_uvloop: the reactor's event loop is not uvloop's")

    # twistd's reactor plugin looks install() up on the module when it installs the reactor
    asyncioreactor.install = install_and_check  # type: ignore[assignment]

    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *args]
    run()


if __name__ == "__main__":
    main()
