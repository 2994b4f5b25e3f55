"""One chat room across processes and machines, shared through Redis (``--redis URL``).

Each node (one tinytcp process) keeps its own members as before (tinytcp/protocol/chat.py)
and shares three things through Redis:

- **messages**: SAY and presence notices are delivered to this node's members at once and
  published on the room's channel; every other node delivers what it receives to its own
  members.  Pub/sub is at-most-once: a message published while a node is cut off from Redis
  does not reach that node's members.
- **nicks**: a nick is the key ``tinytcp:nick:<lower-case nick>`` holding the id of the
  node whose member has it, set with one Lua script (atomic), so two nodes can never both
  grant it.  Each key expires after ``ttl`` seconds unless its node's heartbeat (every
  ``ttl / 3`` seconds) renews it: the nicks of a node that crashed are free again within
  ``ttl`` seconds.  User names that LOGIN or REGISTER on any node join the set
  ``tinytcp:users``, which NICK may not take on any node.
- **who is here**: each node keeps the hash ``tinytcp:node:<id>`` (its nicks, its guest and
  member counts, same expiry) and its id in the sorted set ``tinytcp:nodes`` (scored by
  when it expires), which WHO reads in one script.

Guest numbers come from ``tinytcp:guests`` in blocks of GUEST_BLOCK, so ``guest<N>`` is
unique room-wide too.  While Redis is unreachable, NICK, SAY and WHO answer
``ERROR CHAT_UNAVAILABLE``; nothing is queued.  When Redis is back, the heartbeat runs at
once and reclaims this node's nicks (a nick that another node took meanwhile is dropped
here, with a notice), so a restarted Redis without persistence is repopulated.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from tinytcp.cluster.redis import RedisAddress, RedisLink
from tinytcp.protocol import errors
from tinytcp.protocol.chat import Member, Room, printable
from tinytcp.protocol.reply import Code, Reply, error

log = Logger(namespace="tinytcp")

#: seconds a node's nicks outlive its last heartbeat (--redis-ttl)
DEFAULT_TTL = 30.0
#: guest numbers a node takes from Redis at a time
GUEST_BLOCK = 1000

#: claim a nick for this node's member (giving up its old one): 1, 0 if another node has it,
#: -1 if it is a registered user name and the member is not logging in as that user
CLAIM = b"""
local node, ttl, new, nick, old, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if user == '1' then
  redis.call('SADD', 'tinytcp:users', new)
elseif redis.call('SISMEMBER', 'tinytcp:users', new) == 1 then
  return -1
end
local key = 'tinytcp:nick:' .. new
local owner = redis.call('GET', key)
if owner and owner ~= node then return 0 end
redis.call('SET', key, node, 'EX', ttl)
local hash = 'tinytcp:node:' .. node
if old ~= '' and old ~= new then
  if redis.call('GET', 'tinytcp:nick:' .. old) == node then redis.call('DEL', 'tinytcp:nick:' .. old) end
  redis.call('HDEL', hash, old)
end
redis.call('HSET', hash, new, nick)
redis.call('EXPIRE', hash, ttl)
return 1
"""

#: give a nick back (its member left, logged out, or lost it)
RELEASE = b"""
local node, old = ARGV[1], ARGV[2]
if redis.call('GET', 'tinytcp:nick:' .. old) == node then redis.call('DEL', 'tinytcp:nick:' .. old) end
redis.call('HDEL', 'tinytcp:node:' .. node, old)
return 1
"""

#: renew (or reclaim) every nick of this node and its entry; answers the nicks another node
#: holds now, and how many members the other live nodes have
HEARTBEAT = b"""
local node, ttl, guests, members = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local now = tonumber(redis.call('TIME')[1])
local hash = 'tinytcp:node:' .. node
redis.call('DEL', hash)
local lost = {}
for i = 5, #ARGV, 2 do
  local key = 'tinytcp:nick:' .. ARGV[i]
  local owner = redis.call('GET', key)
  if owner == false or owner == node then
    redis.call('SET', key, node, 'EX', ttl)
    redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
  else
    table.insert(lost, ARGV[i])
  end
end
redis.call('HSET', hash, '#guests', guests, '#members', members)
redis.call('EXPIRE', hash, ttl)
redis.call('ZADD', 'tinytcp:nodes', now + ttl, node)
redis.call('ZREMRANGEBYSCORE', 'tinytcp:nodes', '-inf', now)
local others = 0
for _, other in ipairs(redis.call('ZRANGE', 'tinytcp:nodes', 0, -1)) do
  if other ~= node then
    others = others + (tonumber(redis.call('HGET', 'tinytcp:node:' .. other, '#members')) or 0)
  end
end
return {lost, others}
"""

#: the nicks and guest count of every other live node
WHO = b"""
local node = ARGV[1]
local now = tonumber(redis.call('TIME')[1])
local nicks, guests = {}, 0
for _, other in ipairs(redis.call('ZRANGEBYSCORE', 'tinytcp:nodes', now, '+inf')) do
  if other ~= node then
    local fields = redis.call('HGETALL', 'tinytcp:node:' .. other)
    for i = 1, #fields, 2 do
      if fields[i] == '#guests' then guests = guests + tonumber(fields[i + 1])
      elseif fields[i] ~= '#members' then table.insert(nicks, fields[i + 1]) end
    end
  end
end
return {nicks, guests}
"""

#: this node stops cleanly: its entry goes at once (its members have left already)
LEAVE = b"""
local node = ARGV[1]
redis.call('DEL', 'tinytcp:node:' .. node)
redis.call('ZREM', 'tinytcp:nodes', node)
return 1
"""

#: message kinds on the channel: ``<node>\\0<kind>\\0<payload>``
SAID = b"say"
NOTICE = b"notice"


def new_node_id() -> bytes:
    """Unique among the nodes of a room, readable in Redis: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}".encode()


def unavailable() -> Reply:
    return error(errors.CHAT_UNAVAILABLE)


class SharedRoom(Room):
    """A Room whose nicks, messages and WHO span every node connected to the same Redis."""

    def __init__(self, address: RedisAddress, reactor: Any, ttl: float = DEFAULT_TTL) -> None:
        super().__init__()
        self.address = address
        self.reactor = reactor
        self.ttl = max(3, int(ttl))
        self.node = new_node_id()
        channel = b"tinytcp:room:%d" % address.db  # channels span databases; keys do not
        self.link = RedisLink(reactor, address, channel, self._received, self._up, self._down)
        self.channel = channel
        #: lower-case nicks this node is asking Redis for (a second member asking waits its turn)
        self.claiming: set[bytes] = set()
        #: members of the other live nodes at the last heartbeat (for SAY's count)
        self.others = 0
        self._guest_next = 0
        self._guest_end = 0
        self._refilling = False
        self._heartbeat = task.LoopingCall(self.heartbeat)
        self._heartbeat.clock = reactor

    # lifecycle
    def start(self) -> None:
        """Connect to Redis (and keep reconnecting) and start the heartbeat."""
        self.link.start()
        self._heartbeat.start(self.ttl / 3, now=False)

    def stop(self) -> defer.Deferred[Any]:
        """After the drain: remove this node's entry (its nicks went as its members left)."""
        if self._heartbeat.running:
            self._heartbeat.stop()
        leaving = self.link.eval(LEAVE, self.node) if self.link.up else defer.succeed(None)
        leaving.addErrback(lambda _: None)
        return leaving.addCallback(lambda _: self.link.stop())

    def _up(self) -> None:
        self.heartbeat()
        self._refill_guests()

    def _down(self) -> None:
        self.claiming.clear()

    # guests
    def next_guest(self) -> int:
        """A guest number from this node's block; the local counter until the first block."""
        if self._guest_next < self._guest_end:
            self._guest_next += 1
            if self._guest_end - self._guest_next < GUEST_BLOCK // 2:
                self._refill_guests()
            return self._guest_next
        return super().next_guest()

    def _refill_guests(self) -> None:
        if self._refilling or not self.link.up:
            return
        self._refilling = True

        def got(end: Any) -> None:
            self._refilling = False
            end = int(end)
            if end - GUEST_BLOCK >= self._guest_end:
                self._guest_next, self._guest_end = end - GUEST_BLOCK, end

        def failed(_: Any) -> None:
            self._refilling = False

        self.link.run("INCRBY", "tinytcp:guests", GUEST_BLOCK).addCallbacks(got, failed)

    # nicks
    def take(self, member: Member, nick: bytes, user: bool = False) -> Any:
        holder = self.holder(nick)
        lower = nick.lower()
        if (holder is not None and holder is not member) or self.reserved(nick) or lower in self.claiming:
            return error(errors.NICK_TAKEN)
        if holder is member:
            self.rename(member, nick)  # a change of case only
            return nick
        if not self.link.up:
            return unavailable()
        old = member.nick.lower() if member.nick is not None else b""
        self.claiming.add(lower)

        def answered(granted: Any) -> Any:
            self.claiming.discard(lower)
            if granted == -1:
                return error(errors.NICK_RESERVED)
            if not granted:
                return error(errors.NICK_TAKEN)
            if member not in self.members:  # left while Redis was asked
                self._release(lower)
                return nick
            self.rename(member, nick)
            return nick

        def failed(failure: Any) -> Reply:
            self.claiming.discard(lower)
            log.info("Redis: NICK claim failed: {why}", why=failure.getErrorMessage())
            return unavailable()

        asked = self.link.eval(CLAIM, self.node, self.ttl, lower, nick, old, int(user))
        return asked.addCallbacks(answered, failed)

    def _release(self, lower: bytes) -> None:
        if self.link.up:
            self.link.eval(RELEASE, self.node, lower).addErrback(lambda _: None)
        # else: the key expires within ttl, and the next heartbeat rewrites this node's hash

    def leave(self, member: Member) -> None:
        nick = member.nick if member in self.members else None
        super().leave(member)
        if nick is not None:
            self._release(nick.lower())

    def drop_nick(self, member: Member) -> None:
        nick = member.nick if member in self.members else None
        super().drop_nick(member)
        if nick is not None:
            self._release(nick.lower())

    # messages
    def announce(self, text: bytes, exclude: Member | None = None) -> None:
        super().announce(text, exclude)
        self._publish(NOTICE, text).addErrback(lambda _: None)

    def say(self, member: Member, text: bytes) -> Any:
        if not self.link.up:
            return unavailable()
        body = self.name(member) + b" " + printable(text)
        recipients = [other for other in self.members if other is not member]
        self.deliver(Reply(Code.MSG, body), recipients)
        published = self._publish(SAID, body)

        def sent(_: Any) -> bytes:
            return b"%d" % (len(recipients) + self.others)

        return published.addCallbacks(sent, lambda _: unavailable())

    def _publish(self, kind: bytes, payload: bytes) -> defer.Deferred[Any]:
        if not self.link.up:  # said once, when Redis went away
            return defer.fail(ConnectionError("Redis is down"))
        published = self.link.run("PUBLISH", self.channel, self.node + b"\0" + kind + b"\0" + payload)
        published.addErrback(self._not_published)
        return published

    @staticmethod
    def _not_published(failure: Any) -> Any:
        log.info("Redis: a chat message was not published: {why}", why=failure.getErrorMessage())
        return failure

    def _received(self, message: Any) -> None:
        """A message from the channel: deliver another node's SAY or notice to our members."""
        if not isinstance(message, bytes):
            return
        node, _, rest = message.partition(b"\0")
        kind, _, payload = rest.partition(b"\0")
        if node == self.node:
            return
        if kind == SAID:
            self.deliver(Reply(Code.MSG, payload), list(self.members))
        elif kind == NOTICE:
            Room.announce(self, payload)

    # WHO
    def who(self) -> Any:
        if not self.link.up:
            return unavailable()

        def listed(answer: Any) -> bytes:
            nicks, guests = answer
            everyone = sorted([*nicks, *(m.nick for m in self.nicks.values())], key=lambda n: (n.lower(), n))
            guests = int(guests) + len(self.members) - len(self.nicks)
            if guests:
                everyone.append(b"+%d" % guests)
            return b" ".join(everyone)

        return self.link.eval(WHO, self.node).addCallbacks(listed, lambda _: unavailable())

    # heartbeat
    def heartbeat(self) -> defer.Deferred[Any] | None:
        """Renew this node's nicks and entry; drop the nicks another node took meanwhile."""
        if not self.link.up:
            return None
        self.link.check_subscription()
        pairs: list[bytes] = []
        for lower, member in self.nicks.items():
            pairs += [lower, member.nick]
        guests = len(self.members) - len(self.nicks)
        beating = self.link.eval(HEARTBEAT, self.node, self.ttl, guests, len(self.members), *pairs)

        def renewed(answer: Any) -> None:
            lost, others = answer
            self.others = int(others)
            for lower in lost or ():
                member = self.nicks.get(lower)
                if member is not None:
                    log.warn("chat: nick {nick} is held on another node now; dropped here", nick=lower.decode())
                    nick = member.nick
                    Room.drop_nick(self, member)  # the others see the rename...
                    notice = b"* " + nick + b" is now " + self.name(member)
                    self.deliver(Reply(Code.MSG, notice), [member])  # ...and so does its holder

        def failed(failure: Any) -> None:
            log.info("Redis: heartbeat failed: {why}", why=failure.getErrorMessage())

        return beating.addCallbacks(renewed, failed)

    def status(self) -> dict[str, Any]:
        """INFO's view of the shared room."""
        return {"redis": "up" if self.link.up else "down", "room_others": self.others}
