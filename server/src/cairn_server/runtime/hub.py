"""Per-conversation event fan-out: persist a durable event, then deliver it.

Owns the seq discipline (durable events are stored before anyone sees them, replay on attach
is gap-free, transient events never advance the seq) and which clients are present.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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

    async def publish(self, event: ServerEvent) -> ServerEvent:
        """Persist the event with the next seq, then deliver it to every attached client."""
        async with self._lock:
            stored = await self._store.append_event(self.conversation_id, event)
            self.last_seq = stored.seq
            await self._deliver(stored)
        return stored

    async def publish_transient(self, event: ServerEvent) -> None:
        """Deliver without storing; the event carries the last durable seq."""
        event.seq = self.last_seq
        await self._deliver(event)

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
