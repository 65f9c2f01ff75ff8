"""What each conversation has been shown of the agent's memory.

Owns the frozen memory sections of a conversation's prompt prefix and the block versions
the conversation knows, so a change made elsewhere is told once, as an appended event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import col

from cairn_server.storage.models import Conversation
from cairn_server.storage.repository import Repository, get_or_raise


@dataclass(frozen=True)
class Snapshot:
    prompt_memory: str | None
    prompt_metadata: str | None
    seen: dict[str, int] = field(default_factory=dict)

    @property
    def frozen(self) -> bool:
        return self.prompt_memory is not None


class Snapshots(Repository):
    async def get(self, conversation_id: str) -> Snapshot:
        async with self._transaction(read_only=True) as session:
            conversation = await get_or_raise(session, Conversation, conversation_id)
            return Snapshot(
                conversation.prompt_memory,
                conversation.prompt_metadata,
                dict(conversation.memory_seen or {}),
            )

    async def freeze(
        self, conversation_id: str, memory: str, metadata: str, seen: Mapping[str, int]
    ) -> None:
        """Fix the memory sections of the prompt prefix (first call, or after compaction)."""
        await self._set(
            conversation_id, prompt_memory=memory, prompt_metadata=metadata, memory_seen=dict(seen)
        )

    async def mark_seen(self, conversation_id: str, versions: Mapping[str, int]) -> None:
        """Record that the conversation now knows these block versions (-1: deleted)."""
        if not versions:
            return
        async with self._transaction() as session:
            conversation = await get_or_raise(session, Conversation, conversation_id)
            conversation.memory_seen = {**(conversation.memory_seen or {}), **versions}

    async def _set(self, conversation_id: str, **values: object) -> None:
        async with self._transaction() as session:
            await session.exec(
                update(Conversation).where(col(Conversation.id) == conversation_id).values(**values)
            )
