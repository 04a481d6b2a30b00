"""Wakes a thread that sleeps in a poll: a socketpair whose read end is in that thread's poller, at most one
wake-up byte in flight.

Any thread calls ``wake`` after it queued work for the polling thread; the polling thread calls ``clear``
when its poll returns, before it takes what was queued. A ``wake`` while one is pending writes nothing: the
byte already there makes the poll return, and what was queued before the ``clear`` is taken after it. Under
load, when messages come faster than the polling thread wakes, this saves a system call per message, and
with it a release and re-acquire of the interpreter lock (on 2 cores, a wait for another thread's turn).
Used by the host's I/O thread (``host.server``), its runners thread (``host.runners``) and a runner
process's socket thread (``host.runner``).
"""

from __future__ import annotations

import socket


class Waker:
    """See the module docstring. ``wake``: any thread; ``clear``, ``fileno``: the polling thread."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._pending = False  # a byte is written, or about to be, and the polling thread has not cleared it

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        if self._pending:
            return
        self._pending = True
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def clear(self) -> None:
        """The polling thread woke: read the byte(s), then let the next ``wake`` write again (in that order: a wake
        between the two writes nothing, and its work was queued before this thread takes what is queued)."""
        try:
            self._r.recv(4096)
        except (BlockingIOError, OSError):
            pass
        self._pending = False

    def close(self) -> None:
        self._r.close()
        self._w.close()
