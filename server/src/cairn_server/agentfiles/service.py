"""Importing an agent file into a new agent in one transaction, and exporting an agent.

Owns the order of an import (parse, plan, then every row in one transaction, so a failure
leaves nothing behind), setting an existing agent aside on `replace`, and reading an agent's
blocks, history, passages and model back into the file's form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cairn_protocol import WorkspaceIdentity
from cairn_protocol.rest import AgentImportReport, AgentPublic
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cairn_server.agentfiles.history import HistoryMessage, file_messages
from cairn_server.agentfiles.mapping import ImportPlan, cairn_instructions, plan_import
from cairn_server.agentfiles.schema import AgentFileError, parse_agent_file
from cairn_server.config import ServerSettings
from cairn_server.errors import CairnServerError
from cairn_server.memory.blocks import Author, first_version, in_display_order, new_block
from cairn_server.providers.catalog import resolve_model
from cairn_server.storage.models import (
    Agent,
    AgentAlias,
    Block,
    Conversation,
    Message,
    Passage,
    User,
    utcnow,
)
from cairn_server.storage.repository import Repository, describe_failure, get_or_raise
from cairn_server.storage.store import agent_by_key

INSERT_BATCH = 1000  # rows per INSERT of a long history
EXPORT_AGENT_ID = "agent-0"


class AgentExistsError(CairnServerError, ValueError):
    """The codebase already has an agent and the import was not asked to replace it."""


@dataclass(frozen=True)
class Imported:
    agent: Agent
    conversation_id: str | None
    replaced_agent_id: str | None


class AgentFiles(Repository):
    """Agent files in and out of the database; each import is one transaction."""

    async def import_file(
        self,
        raw: bytes,
        user: User,
        workspace: WorkspaceIdentity,
        settings: ServerSettings,
        *,
        replace: bool = False,
        raise_limits: bool = False,
    ) -> AgentImportReport:
        """A new agent for the workspace's codebase from the file, with the report.

        AgentFileError (nothing stored) for a file that cannot be imported; AgentExistsError
        when the codebase has an agent and `replace` is false. `raise_limits`: a block over its
        limit is kept with a limit that holds it."""
        file = parse_agent_file(raw)
        plan = plan_import(file, settings.model, settings.context_budget, raise_limits=raise_limits)
        imported = await self.store_plan(
            plan, user, workspace, settings.context_budget, replace=replace
        )
        return AgentImportReport(
            agent=AgentPublic.model_validate(imported.agent),
            conversation_id=imported.conversation_id,
            replaced_agent_id=imported.replaced_agent_id,
            items=plan.items,
        )

    async def store_plan(
        self,
        plan: ImportPlan,
        user: User,
        workspace: WorkspaceIdentity,
        default_budget: int,
        *,
        replace: bool = False,
    ) -> Imported:
        """Every row of the plan, in one transaction: all of it, or (on any failure) none."""
        try:
            async with self._transaction() as session:
                replaced = await self._make_room(session, user.id, workspace, replace)
                agent = Agent(
                    user_id=user.id,
                    codebase_key=workspace.key,
                    display_name=workspace.display_name,
                    origin=workspace.origin,
                    model=plan.model,
                    context_budget=plan.context_budget or default_budget,
                )
                session.add(agent)
                await session.flush()
                if replaced is not None:
                    await session.exec(
                        update(AgentAlias)
                        .where(col(AgentAlias.agent_id) == replaced)
                        .values(agent_id=agent.id)
                    )
                conversation_id = await _add_history(session, agent.id, plan)
                await _add_passages(session, agent.id, plan)
                _add_blocks(session, agent.id, plan, Author("user", name=user.name))
            return Imported(agent, conversation_id, replaced)
        except IntegrityError as exc:
            raise AgentFileError(
                f"the import conflicted with a change made meanwhile; nothing was imported "
                f"({describe_failure(exc)})"
            ) from None

    async def _make_room(
        self, session: AsyncSession, user_id: str, workspace: WorkspaceIdentity, replace: bool
    ) -> str | None:
        """Set the codebase's agent aside (re-keyed, nothing deleted) when replacing; its id."""
        existing = await agent_by_key(session, user_id, workspace.key)
        if existing is None:
            return None
        if not replace:
            raise AgentExistsError(
                f"this codebase already has an agent ({existing.id}, {existing.display_name}); "
                "import with --replace to set it aside (it is kept, not deleted)"
            )
        existing.codebase_key = f"replaced:{existing.id}:{existing.codebase_key}"
        session.add(existing)
        await session.flush()
        return existing.id

    async def export_file(self, agent_id: str, settings: ServerSettings) -> dict[str, Any]:
        """The agent as an agent file: its blocks, every conversation's messages (oldest
        conversation first), its passages and its model."""
        async with self._transaction(read_only=True) as session:
            agent = await get_or_raise(session, Agent, agent_id)
            blocks = await _blocks_of(session, agent_id)
            history = await _history_of(session, agent_id)
            passages = list(
                (
                    await session.exec(
                        select(Passage)
                        .where(Passage.agent_id == agent_id)
                        .order_by(col(Passage.id))
                    )
                ).all()
            )
        return _document(agent, blocks, history, passages, settings)


# ---------------------------------------------------------------------- import rows


def _add_blocks(session: AsyncSession, agent_id: str, plan: ImportPlan, author: Author) -> None:
    author = Author(author.kind, author.name, reason=f"imported from the agent file {plan.name}")
    for planned in plan.blocks:
        block = new_block(
            agent_id,
            planned.label,
            planned.value,
            planned.description,
            planned.char_limit,
            planned.read_only,
        )
        session.add(block)
        session.add(first_version(block, author))


async def _add_history(session: AsyncSession, agent_id: str, plan: ImportPlan) -> str | None:
    if not plan.messages:
        return None
    conversation = Conversation(agent_id=agent_id, title=f"Imported from {plan.name}"[:60])
    session.add(conversation)
    await session.flush()
    now = utcnow()
    rows = [_message_row(conversation.id, message, now) for message in plan.messages]
    await _insert_batches(session, Message, rows)
    return conversation.id


def _message_row(conversation_id: str, message: HistoryMessage, now: Any) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "run_id": None,
        "role": message.role,
        "content": message.content,
        "tool_calls": list(message.tool_calls),
        "tool_call_id": message.tool_call_id,
        "is_error": message.is_error,
        "created_at": message.created_at or now,
    }


async def _add_passages(session: AsyncSession, agent_id: str, plan: ImportPlan) -> None:
    now = utcnow()
    rows = [
        {
            "agent_id": agent_id,
            "text": passage.text,
            "tags": passage.tags,
            "created_at": passage.created_at or now,
        }
        for passage in plan.passages
    ]
    await _insert_batches(session, Passage, rows)


async def _insert_batches(
    session: AsyncSession, table: type[Message] | type[Passage], rows: Sequence[dict[str, Any]]
) -> None:
    """Many rows in few statements, in order (their ids follow it)."""
    for start in range(0, len(rows), INSERT_BATCH):
        batch = list(rows[start : start + INSERT_BATCH])
        connection = await session.connection()
        await connection.execute(insert(table), batch)  # Core executemany: no ORM per row


# ---------------------------------------------------------------------- export


async def _blocks_of(session: AsyncSession, agent_id: str) -> list[Block]:
    blocks = (await session.exec(select(Block).where(Block.agent_id == agent_id))).all()
    return in_display_order(blocks)


async def _history_of(session: AsyncSession, agent_id: str) -> list[HistoryMessage]:
    query = (
        select(Message)
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(Conversation.agent_id == agent_id)
        .order_by(col(Conversation.created_at), col(Conversation.id), col(Message.id))
    )
    return [
        HistoryMessage(
            role=row.role,
            content=row.content,
            tool_calls=tuple(
                {"id": str(c["id"]), "name": str(c["name"]), "arguments": str(c["arguments"])}
                for c in row.tool_calls or []
            ),
            tool_call_id=row.tool_call_id,
            is_error=row.is_error,
            created_at=row.created_at,
        )
        for row in (await session.exec(query)).all()
    ]


def _document(
    agent: Agent,
    blocks: list[Block],
    history: list[HistoryMessage],
    passages: list[Passage],
    settings: ServerSettings,
) -> dict[str, Any]:
    block_ids = [f"block-{index}" for index in range(len(blocks))]
    messages = file_messages(history, cairn_instructions(agent.display_name), EXPORT_AGENT_ID)
    file_agent = {
        "id": EXPORT_AGENT_ID,
        "name": agent.display_name,
        "agent_type": "letta_v1_agent",
        "system": cairn_instructions(agent.display_name),
        "memory_blocks": [],
        "block_ids": block_ids,
        "tools": [],
        "tool_ids": [],
        "tool_rules": [],
        "tags": [],
        "llm_config": _llm_config(agent, settings),
        "messages": messages,
        "in_context_message_ids": [message["id"] for message in messages],
        "passages": [
            {"text": p.text, "tags": p.tags, "created_at": p.created_at.isoformat()}
            for p in passages
        ],
        "files_agents": [],
        "group_ids": [],
    }
    return {
        "agents": [file_agent],
        "groups": [],
        "blocks": [
            {
                "id": block_id,
                "label": block.label,
                "value": block.value,
                "limit": block.char_limit,
                "description": block.description,
                "read_only": block.read_only,
                "metadata": {},
            }
            for block_id, block in zip(block_ids, blocks, strict=True)
        ],
        "files": [],
        "sources": [],
        "tools": [],
        "mcp_servers": [],
        "metadata": {"exported_by": "cairn"},
        "created_at": utcnow().isoformat(),
    }


def _llm_config(agent: Agent, settings: ServerSettings) -> dict[str, Any] | None:
    model = resolve_model(agent.model, settings.model).model
    if model is None:
        return None
    endpoint, _, name = model.partition("/")
    return {
        "model": name,
        "model_endpoint_type": endpoint,
        "handle": model,
        "context_window": agent.context_budget or settings.context_budget,
    }
