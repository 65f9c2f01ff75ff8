"""The frames waiting to be written to one websocket, bounded so a stalled client costs little.

Owns the backlog count and the rule that overflows it: a client that falls too far behind
is dropped, and everything queued for it with it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Outbox:
    """Serialized frames for one connection's writer; `put` never waits.

    Publishing must not stall on one slow client, so a frame that would take the live
    backlog (frames not yet handed to the network) past `limit` characters overflows the
    outbox instead: the queue is emptied, `overflowed` is set, and the connection is to be
    closed. A frame always fits an empty outbox, and frames put with `bounded=False` (the
    welcome and the replay the client asked for) do not count towards the limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.overflowed = asyncio.Event()
        self._frames: deque[tuple[str, bool]] = deque()
        self._live = 0  # characters of bounded frames queued or being written
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, frame: str, *, bounded: bool = True) -> None:
        """Queue a frame, or overflow; after close() or an overflow, frames are dropped."""
        if self._closed:
            return
        if bounded:
            if self._live and self._live + len(frame) > self.limit:
                self._overflow()
                return
            self._live += len(frame)
        self._frames.append((frame, bounded))
        self._ready.set()

    def close(self) -> None:
        """Take no more frames; `next` returns None once the queued ones are written."""
        self._closed = True
        self._ready.set()

    async def next(self) -> tuple[str, bool] | None:
        """The next frame and whether it is bounded; None when closed and empty. Call
        `written` once it has been handed to the network."""
        while not self._frames:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def written(self, frame: str, bounded: bool) -> None:
        if bounded:
            self._live = max(0, self._live - len(frame))

    def _overflow(self) -> None:
        self._frames.clear()  # the memory goes now, not when the connection is gone
        self._live = 0
        self._closed = True
        self._ready.set()
        self.overflowed.set()
