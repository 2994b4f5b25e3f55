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
AUTH_FAILED = "AUTH_FAILED"
AUTH_REQUIRED = "AUTH_REQUIRED"
REGISTER_DISABLED = "REGISTER_DISABLED"
NICK_RESERVED = "NICK_RESERVED"
LOGGED_IN = "LOGGED_IN"
TLS_REQUIRED = "TLS_REQUIRED"
DENIED = "DENIED"
CHAT_UNAVAILABLE = "CHAT_UNAVAILABLE"

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
    RATE_LIMITED: (
        "SAY was sent faster than --say-rate messages a second (after a burst of --say-burst); or too many"
        " failed LOGINs from this address or for this user within --login-window"
    ),
    INTERNAL_ERROR: "a command failed inside the server (a bug; its traceback is logged)",
    AUTH_FAILED: "LOGIN with an unknown user or a wrong password (the same reply for both)",
    AUTH_REQUIRED: "--require-login: a command other than LOGIN, REGISTER, HELP or QUIT before LOGIN (and LOGOUT then)",
    REGISTER_DISABLED: "REGISTER while self-registration is off (--require-login without --allow-register, or --auth)",
    NICK_RESERVED: "NICK names a registered user name (ignoring case) that is not the client's own",
    LOGGED_IN: "NICK to another name, or REGISTER, while logged in (a logged-in user chats under the user name)",
    TLS_REQUIRED: "LOGIN or REGISTER over plain TCP from a non-loopback address",
    CHAT_UNAVAILABLE: (
        "--redis: NICK, SAY or WHO (or LOGIN's nick) while the shared chat room's Redis is unreachable;"
        " other commands keep working, and chat comes back by itself once Redis does"
    ),
    DENIED: "protected mode: a non-loopback client while login is not required; sent with a hint, then closes",
}
