"""The TCP transport tinytcp's listeners hand their connections: Twisted's, with a faster write path.

Twisted's ``tcp.Server`` queues every write and sends it on a later reactor turn, registering
the socket for writability and unregistering it after (two ``epoll_ctl`` calls and a loop
pass per reply), and when it does send it first joins its queued pieces into one bytes
object, so a 1 MiB reply is copied once or twice before the kernel sees it.
``WriteThroughTransport`` keeps everything else of Twisted's transport (closing, half-close,
abort, producers) and changes only that:

- a write with nothing queued before it goes straight to the socket; only what the kernel
  does not take is queued (as a view of the same bytes, not a copy);
- the queue is sent with one ``sendmsg`` over its pieces, never joined;
- a read goes to the protocol's ``dataReceived`` without ``tcp.Connection``'s extra call.

After ``startTLS()`` (``self.TLS``) writes go to Twisted's own ``write``/``writeSequence``,
which hand them to the TLS layer; that layer's ciphertext comes back through Twisted's
``FileDescriptor.write`` into the same queue, which ``doWrite`` sends.

The queue is Twisted's own ``_tempDataBuffer``/``_tempDataLen``, so backpressure
(``_maybePauseProducer`` at ``bufferSize`` bytes) and the end-of-buffer steps of
``loseConnection`` behave exactly as in Twisted; ``dataBuffer`` stays empty.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any

from twisted.internet import main, tcp
from twisted.internet.abstract import _dataMustBeBytes

#: errors of send/sendmsg that mean "try again when the socket is writable"
_AGAIN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR})

#: most buffers handed to one sendmsg (Linux's IOV_MAX is 1024)
MAX_PIECES = 1024


class WriteThroughTransport(tcp.Server):
    """``tcp.Server`` that writes to the socket at once when it can, and never joins its queue.

    It also counts the bytes the socket took in and out, for INFO (tinytcp/ops/status.py).
    """

    bytes_in = 0
    bytes_out = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        tcp.Server.__init__(self, *args, **kwargs)
        # What doRead and write test on every call, held by the instance although the
        # classes give the same defaults: CPython 3.11 specializes an attribute load only
        # when the instance holds the value, and takes a generic lookup through the
        # classes (a few hundred instructions) for a class attribute.
        self.bufferSize = self.bufferSize
        self.TLS = False
        self._aborting = False
        self._writeDisconnected = False
        self.bytes_in = 0
        self.bytes_out = 0

    def doRead(self) -> Any:
        """tcp.Connection.doRead, handing the data to the protocol without another call between."""
        try:
            data = self.socket.recv(self.bufferSize)
        except OSError as e:
            if e.errno == errno.EWOULDBLOCK:
                return None
            return main.CONNECTION_LOST
        if not data:
            return main.CONNECTION_DONE
        self.bytes_in += len(data)
        self.protocol.dataReceived(data)
        return None

    def write(self, data: bytes) -> None:
        if self.TLS:  # plaintext must go through the TLS layer started by startTLS()
            tcp.Server.write(self, data)
            return
        if data.__class__ is not bytes:
            _dataMustBeBytes(data)
        if not data or not self.connected or self._writeDisconnected:
            return
        if not self._tempDataLen and not self._aborting:
            # nothing is queued: straight to the socket (any error counts as nothing sent:
            # the data is queued, and on a dead connection doWrite meets the error again)
            try:
                sent = self.socket.send(data)
            except OSError:
                sent = 0
            self.bytes_out += sent
            if sent == len(data):
                return
            if sent:
                self._queue([memoryview(data)[sent:]])
                return
        self._queue([data])

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        if self.TLS:
            tcp.Server.writeSequence(self, iovec)
            return
        pieces = [piece for piece in iovec if piece]
        for piece in pieces:
            _dataMustBeBytes(piece)
        if not pieces or not self.connected or self._writeDisconnected:
            return
        if not self._tempDataLen and not self._aborting:
            sent = self._sendmsg(pieces)
            if sent > 0:  # as in write, an error counts as nothing sent
                _consume(pieces, sent)
                if not pieces:
                    return
        self._queue(pieces)

    def _queue(self, pieces: list[Any]) -> None:
        """Keep what the socket did not take, in order, for doWrite."""
        self._tempDataBuffer.extend(pieces)
        self._tempDataLen += sum(len(piece) for piece in pieces)
        self._maybePauseProducer()
        self.startWriting()

    def _sendmsg(self, pieces: list[Any]) -> int:
        """Send the front of ``pieces``: the bytes sent, 0 when the socket is full, -1 when it is dead."""
        try:
            sent = self.socket.sendmsg(pieces[:MAX_PIECES]) if len(pieces) > 1 else self.socket.send(pieces[0])
        except OSError as e:
            return 0 if e.errno in _AGAIN else -1
        self.bytes_out += sent
        return sent

    def doWrite(self) -> Any:
        """Send the queue with one sendmsg; once it is empty, do what Twisted does then."""
        pieces = self._tempDataBuffer
        if pieces:
            sent = self._sendmsg(pieces)
            if sent < 0:
                return main.CONNECTION_LOST
            self._tempDataLen -= sent
            _consume(pieces, sent)
            if pieces:
                return None
        # the queue is empty: the end-of-buffer steps of FileDescriptor.doWrite
        self.stopWriting()
        if self.producer is not None and ((not self.streamingProducer) or self.producerPaused):
            self.producerPaused = False
            self.producer.resumeProducing()
        elif self.disconnecting:
            return self._postLoseConnection()
        elif self._writeDisconnecting:
            self._writeDisconnected = True
            return self._closeWriteConnection()
        return None


def _consume(pieces: list[Any], sent: int) -> None:
    """Drop the first ``sent`` bytes from the front of ``pieces`` (a partly sent piece becomes a view)."""
    done = 0
    for piece in pieces:
        size = len(piece)
        if sent < size:
            if sent:
                pieces[done] = memoryview(piece)[sent:]
            break
        sent -= size
        done += 1
    del pieces[:done]
