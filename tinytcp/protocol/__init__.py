"""Everything about tinytcp's protocol that does no I/O: the command core, replies and error
names, the codecs of both wire formats, telnet stripping, frame splitting and the chat room's
rules.  Nothing here imports a reactor; it is tested without one."""
