"""The error names sent as ``ERROR <NAME>`` (text) or an error frame (binary).

Every name the server can send is listed here, with the reason it is sent, so that
docs/protocol.md and the tests can be checked against one list.
"""

UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
BAD_ARGUMENTS = "BAD_ARGUMENTS"
BAD_ENCODING = "BAD_ENCODING"
FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
LINE_TOO_LONG = "LINE_TOO_LONG"
IDLE_TIMEOUT = "IDLE_TIMEOUT"
BUSY = "BUSY"
NICK_TAKEN = "NICK_TAKEN"
SLOW_CONSUMER = "SLOW_CONSUMER"
RATE_LIMITED = "RATE_LIMITED"
INTERNAL_ERROR = "INTERNAL_ERROR"

#: name -> when it is sent; docs/protocol.md carries the same table.
ERRORS: dict[str, str] = {
    UNKNOWN_COMMAND: "the command word (text) or code (binary) is not a command",
    BAD_ARGUMENTS: "the command got an argument it does not take, or lacks one it needs",
    BAD_ENCODING: "a text line, or a payload that must be text, is not valid UTF-8",
    FRAME_TOO_LARGE: "a binary frame announces a payload above --max-frame; the connection closes",
    LINE_TOO_LONG: "a text line grows past --max-line bytes; the connection closes",
    IDLE_TIMEOUT: "the client sent nothing and read nothing for --idle-timeout seconds; the connection closes",
    BUSY: "--max-connections connections are already open; this one closes at once",
    NICK_TAKEN: "NICK names a nick another client holds (ignoring case), or a guest name (guest<N>)",
    SLOW_CONSUMER: "the client left more than --max-pending bytes of pushed messages unread; the connection closes",
    RATE_LIMITED: "SAY was sent faster than --say-rate messages a second (after a burst of --say-burst)",
    INTERNAL_ERROR: "a command failed inside the server (a bug; its traceback is logged)",
}
