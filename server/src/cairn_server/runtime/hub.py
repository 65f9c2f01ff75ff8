"""Per-conversation event fan-out: persist a durable event, then deliver it.

Owns the seq discipline (durable events are stored before anyone sees them, replay on attach
is gap-free, transient events never advance the seq) and which clients are present.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cairn_protocol import ServerEvent

from cairn_server.storage.store import Store

Deliver = Callable[[ServerEvent], Awaitable[None]]


@dataclass(frozen=True)
class Client:
    """A client instance: its id (kept across its reconnects) and the checkout it runs in."""

    id: str
    path: str


class ConversationHub:
    """The one place a conversation's events pass through."""

    def __init__(self, store: Store, conversation_id: str, last_seq: int) -> None:
        self._store = store
        self.conversation_id = conversation_id
        self.last_seq = last_seq
        self._subscribers: dict[int, Deliver] = {}
        self._clients: dict[int, str] = {}  # connection key → client id, from hello on
        self._lock = asyncio.Lock()
        # While a batch is open: the task that opened it, and its events, in order.
        self._batch_task: asyncio.Task[object] | None = None
        self._batched: list[tuple[ServerEvent, bool]] = []  # (event, durable)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Every store call and durable event of the current task inside is one transaction;
        the events (transient ones too, in their order) are delivered once it committed, and
        not at all if it failed. Publish to this hub only inside (the lock is held)."""
        if self._in_batch():
            yield
            return
        async with self._lock:
            self._batch_task, self._batched = asyncio.current_task(), []
            try:
                async with self._store.unit():
                    yield
                events = self._batched
            finally:
                self._batch_task, self._batched = None, []
            for event, durable in events:
                await (self._deliver_stored(event) if durable else self._deliver(event))

    async def publish(self, event: ServerEvent) -> ServerEvent:
        """Persist the event with the next seq, then deliver it to every attached client."""
        if self._in_batch():
            stored = await self._store.append_event(self.conversation_id, event)
            self._batched.append((stored, True))
            return stored
        async with self._lock:
            stored = await self._store.append_event(self.conversation_id, event)
            await self._deliver_stored(stored)
        return stored

    async def catch_up(self) -> None:
        """Deliver the events another server process stored since this hub's newest (told
        by the database's announcement, or before a welcome), and take their seq."""
        async with self._lock:
            for event in await self._store.events_after(self.conversation_id, self.last_seq):
                await self._deliver_stored(event)

    async def _deliver_stored(self, event: ServerEvent) -> None:
        """Deliver a durable event (the lock held), after any another process stored before
        it that this hub has not delivered yet, so every client sees every seq in order."""
        if event.seq > self.last_seq + 1:
            for missed in await self._store.events_after(self.conversation_id, self.last_seq):
                if missed.seq >= event.seq:
                    break
                self.last_seq = missed.seq
                await self._deliver(missed)
        self.last_seq = max(self.last_seq, event.seq)
        await self._deliver(event)

    async def publish_transient(self, event: ServerEvent) -> None:
        """Deliver without storing; the event carries the last durable seq."""
        if self._in_batch():
            durable = [e.seq for e, stored in self._batched if stored]
            event.seq = durable[-1] if durable else self.last_seq
            self._batched.append((event, False))
        else:
            event.seq = self.last_seq
            await self._deliver(event)

    def _in_batch(self) -> bool:
        return self._batch_task is not None and self._batch_task is asyncio.current_task()

    async def attach(self, key: int, deliver: Deliver, resume_after: int | None) -> None:
        """Replay what the client missed, then subscribe it, with no event in between lost."""
        async with self._lock:
            if resume_after is not None:
                for missed in await self._store.events_after(self.conversation_id, resume_after):
                    await deliver(missed)
            self._subscribers[key] = deliver

    def enter(self, key: int, client_id: str) -> None:
        """A connection of `client_id` is here (from its hello; attach comes after the welcome)."""
        self._clients[key] = client_id

    def present(self, client_id: str) -> bool:
        """Whether any connection of that client is here."""
        return client_id in self._clients.values()

    def detach(self, key: int) -> None:
        self._subscribers.pop(key, None)
        self._clients.pop(key, None)

    @property
    def attached(self) -> bool:
        return bool(self._subscribers)

    @property
    def idle(self) -> bool:
        """No connection is here, subscribed or still opening."""
        return not self._subscribers and not self._clients

    async def _deliver(self, event: ServerEvent) -> None:
        for deliver in list(self._subscribers.values()):
            await deliver(event)
