"""Reflections (sleep-time memory) in the database: each conversation's watermark, each run.

Owns claiming the agent's one running reflection (a partial unique index), recording its
progress with the watermark in the same transaction, and finding conversations gone idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cairn_protocol import Usage
from cairn_protocol.rest import ReflectionStatus, ReflectionTrigger
from sqlalchemy import and_, exists, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from cairn_server.storage.models import Conversation, Message, Reflection, Run, utcnow
from cairn_server.storage.repository import Repository, get_or_raise

# A reflection still "running" this long after it started was lost (its process died).
STALE_AFTER = timedelta(minutes=30)
RESTARTED = "the server restarted during this reflection"


class Reflections(Repository):
    """Every method is one transaction."""

    async def claim(
        self, agent_id: str, conversation_id: str, trigger: ReflectionTrigger, model: str | None
    ) -> Reflection | None:
        """A new running reflection, or None while the agent has one running already."""
        await self._expire_stale(agent_id)
        try:
            async with self._transaction() as session:
                await get_or_raise(session, Conversation, conversation_id)
                row = Reflection(
                    agent_id=agent_id,
                    conversation_id=conversation_id,
                    trigger=trigger,
                    model=model,
                )
                session.add(row)
                return row
        except IntegrityError:
            return None

    async def progress(
        self,
        reflection_id: str,
        *,
        through: int,
        messages_read: int,
        usage: Usage,
        edits: Sequence[dict[str, Any]],
    ) -> Reflection:
        """What it has read and done so far; the conversation's watermark moves to `through`
        in the same transaction (it never moves back)."""
        async with self._transaction() as session:
            row = await get_or_raise(session, Reflection, reflection_id)
            _record(row, usage, edits)
            row.through_message = max(row.through_message, through)
            row.messages_read = messages_read
            conversation = await get_or_raise(session, Conversation, row.conversation_id)
            conversation.reflected_through = max(conversation.reflected_through, through)
            session.add(conversation)
            session.add(row)
            return row

    async def finish(
        self,
        reflection_id: str,
        status: ReflectionStatus,
        *,
        usage: Usage,
        edits: Sequence[dict[str, Any]],
        detail: str | None = None,
        attempted_through: int = 0,
    ) -> Reflection:
        """End it. `attempted_through`: the last message it was given (a failed reflection
        records it so an idle conversation is tried again only after new messages)."""
        async with self._transaction() as session:
            row = await get_or_raise(session, Reflection, reflection_id)
            _record(row, usage, edits)
            row.status = status
            row.detail = detail
            row.through_message = max(row.through_message, attempted_through)
            row.finished_at = utcnow()
            session.add(row)
            return row

    async def interrupt_running(self) -> int:
        """At server start: every reflection left running failed (its process is gone)."""
        async with self._transaction() as session:
            result = await session.exec(
                update(Reflection)
                .where(col(Reflection.status) == "running")
                .values(status="failed", detail=RESTARTED, finished_at=utcnow())
            )
            return int(result.rowcount or 0)

    async def last_message(self, conversation_id: str) -> int:
        """The id of the conversation's newest message (0: none)."""
        query = select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
        async with self._transaction(read_only=True) as session:
            return int((await session.exec(query)).one() or 0)

    async def get(self, reflection_id: str) -> Reflection:
        async with self._transaction(read_only=True) as session:
            return await get_or_raise(session, Reflection, reflection_id)

    async def of_conversation(self, conversation_id: str) -> list[Reflection]:
        """The conversation's reflections, newest first."""
        return await self._all(
            select(Reflection)
            .where(Reflection.conversation_id == conversation_id)
            .order_by(col(Reflection.created_at).desc(), col(Reflection.id).desc())
        )

    async def idle_conversations(self, cutoff: datetime, limit: int = 20) -> list[Conversation]:
        """Conversations quiet since before `cutoff`, with no run going and no reflection of
        their agent going, holding a user or assistant message past their watermark and past
        what a reflection last tried."""
        tried = (
            select(func.coalesce(func.max(Reflection.through_message), 0))
            .where(col(Reflection.conversation_id) == col(Conversation.id))
            .scalar_subquery()
        )
        new_message = exists().where(
            and_(
                col(Message.conversation_id) == col(Conversation.id),
                col(Message.id) > col(Conversation.reflected_through),
                col(Message.id) > tried,
                col(Message.role).in_(("user", "assistant")),
            )
        )
        running = exists().where(
            and_(col(Run.conversation_id) == col(Conversation.id), col(Run.status) == "running")
        )
        reflecting = exists().where(
            and_(
                col(Reflection.agent_id) == col(Conversation.agent_id),
                col(Reflection.status) == "running",
            )
        )
        query = (
            select(Conversation)
            .where(col(Conversation.updated_at) < cutoff, new_message, ~running, ~reflecting)
            .order_by(col(Conversation.updated_at))
            .limit(limit)
        )
        return await self._all(query)

    async def _expire_stale(self, agent_id: str) -> None:
        async with self._transaction() as session:
            await session.exec(
                update(Reflection)
                .where(
                    col(Reflection.agent_id) == agent_id,
                    col(Reflection.status) == "running",
                    col(Reflection.created_at) < utcnow() - STALE_AFTER,
                )
                .values(status="failed", detail="lost: it never finished", finished_at=utcnow())
            )


def _record(row: Reflection, usage: Usage, edits: Sequence[dict[str, Any]]) -> None:
    row.input_tokens = usage.input_tokens
    row.cached_input_tokens = usage.cached_input_tokens
    row.output_tokens = usage.output_tokens
    row.cost_usd = usage.cost_usd
    row.edits = list(edits)
