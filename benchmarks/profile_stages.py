"""Where the microseconds of one request go, by stage, from a py-spy profile of the server.

    python benchmarks/profile_server.py --sampler py-spy --command reverse   # prints "raw profiles in DIR"
    python benchmarks/profile_stages.py DIR/binary.spy --requests N          # N: the run's requests_verified

Every busy sample (waiting in epoll_wait left out) is put in one stage by its innermost
frame, and a stage's samples times the sampling interval divided by the requests gives its
microseconds per request:

- ``framing``: cutting the request out of the read (the loop's head, header, offsets, the
  payload's slice; splitting a line and its word);
- ``dispatch``: finding the command and calling its handler (the call's own cost shows partly
  here and partly on the handler's first line, so read ``dispatch`` and ``command`` together);
- ``count``: the bookkeeping INFO needs (appending the request's code, the fold);
- ``command``: the handler's own body (for REVERSE: decode, reverse, encode);
- ``reply``: the reply's form (the test of the answer, its header or prefix, the appends);
- ``writes``: joining the replies and sending them;
- ``reads+reactor``: the read itself, the reactor's dispatch, the rest of the per-read code;
- ``unattributed`` (not in ``total``): samples in which py-spy read no Python stack.

The request loops are split by their source lines, found by the statements that end each
stage, in this checkout's source: classify a profile from the tree that produced it (a
profile of an older server/binary.py, read against a newer one, lands in the wrong stages).
The loops of tinytcp before issue 13 (4555938, a flat ``tinytcp/`` package) are split by
function, and there the per-command
counters are part of ``dispatch`` (``Core.frame_request``/``text_request``).  py-spy's
``--rate`` is 1,000 samples per second in profile_server.py, the default here.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re

from profile_server import TINYTCP_POLL_LINE

HERE = os.path.dirname(os.path.abspath(__file__))
#: the innermost frame of a sample that waits in epoll_wait: tinytcp's reactor's poll line
#: (profile_server.py finds it), or line 38 of 4555938's tinytcp/reactor.py
WAITING = re.compile(rf"EPollReactor\.doPoll \(tinytcp/(server/reactor\.py:{TINYTCP_POLL_LINE}|reactor\.py:38)\)$")
STAGES = ("framing", "dispatch", "count", "command", "reply", "writes", "reads+reactor")
#: old (4555938) functions by stage; anything unnamed here is reads+reactor
OLD_FUNCTIONS = {
    "FrameReceiver.dataReceived": "framing",
    "parse_text_request": "framing",
    "TextProtocol.dataReceived": "framing",  # the per-line loop, before issue 13
    "BinaryProtocol.frameReceived": "dispatch",
    "TextProtocol.line": "dispatch",
    "Core.frame_request": "dispatch",
    "Core.text_request": "dispatch",
    "encode_frame_reply": "reply",
    "encode_text_reply": "reply",
}
FUNCTIONS = {
    "LineSplitter.feed": "framing",
    "Core.tally": "count",
    "_reverse": "command",
    "_echo": "command",
    "_help": "command",
    "reverse_text": "command",
}
#: statements that end a stage of each request loop (the first line holding the text)
ENDS = {
    "server/binary.py": [
        ("payload = data[start:offset]", "framing"),
        ("handler = handlers[code]", "dispatch"),
        ("if handler is None:", "dispatch"),
        ("answer = handler(core, session, payload)", "dispatch"),
        ("# a larger reply", "reply"),
    ],
    "server/text.py": [
        ("continue  # a blank line gets no reply", "framing"),
        ("if command is None or not", "dispatch"),
        ("answer = handler(core, session,", "dispatch"),
        ("unflushed += len(data)", "reply"),
    ],
}


def line_stages(path: str) -> list[tuple[int, str]]:
    """(last line, stage) for the request loop in ``path``, in order; lines after the last are writes."""
    with open(path) as f:
        lines = f.read().splitlines()
    start = next(n for n, text in enumerate(lines, 1) if "def answer_from" in text)
    bounds = []
    for marker, stage in ENDS[os.path.relpath(path, os.path.join(HERE, "..", "tinytcp")).replace(os.sep, "/")]:
        bounds.append((next(n for n, text in enumerate(lines, 1) if n > start and marker in text), stage))
    return bounds


def stage_of(frame: str, loops: dict[str, list[tuple[int, str]]], counted: dict[str, set[int]]) -> str:
    match = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not match:
        return "reads+reactor"
    name, path, line = match.group(1), match.group(2), int(match.group(3))
    for suffix, bounds in loops.items():
        if name.endswith("answer_from") and path.endswith(suffix):
            if line in counted[suffix]:
                return "count"
            return next((stage for last, stage in bounds if line <= last), "writes")
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    if name == "<lambda>" and path == "<string>":
        return "reply"  # a namedtuple's __new__: building a Reply
    if path.startswith("tinytcp/") and path.count("/") == 1 and name in OLD_FUNCTIONS:
        return OLD_FUNCTIONS[name]
    if any(word in name for word in ("write", "Write", "flush", "send", "_dataMustBeBytes")):
        return "writes"
    return "reads+reactor"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", help="a py-spy raw profile from profile_server.py")
    parser.add_argument("--requests", type=int, required=True, help="requests answered in the run")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    args = parser.parse_args()
    root = os.path.join(HERE, "..", "tinytcp")
    loops = {suffix: line_stages(os.path.join(root, suffix)) for suffix in ENDS}
    counted = {}
    for suffix in ENDS:
        with open(os.path.join(root, suffix)) as f:
            counted[suffix] = {n for n, text in enumerate(f, 1) if "codes.append(" in text}
    samples: collections.Counter[str] = collections.Counter()
    unattributed = 0
    with open(args.raw) as f:
        for row in f:
            stack, _, count = row.rstrip().rpartition(" ")
            if not stack.strip():
                unattributed += int(count)  # py-spy read no Python stack
                continue
            innermost = stack.split(";")[-1]
            if WAITING.match(innermost):
                continue  # waiting in epoll_wait
            samples[stage_of(innermost, loops, counted)] += int(count)
    micro = {stage: samples[stage] * 1e6 / args.rate / args.requests for stage in STAGES}
    figures = {stage: round(value, 3) for stage, value in micro.items()}
    figures["total"] = round(sum(micro.values()), 3)
    figures["unattributed"] = round(unattributed * 1e6 / args.rate / args.requests, 3)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
