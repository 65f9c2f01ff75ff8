"""Agents, conversations and history written straight to the server's Store, for the
storage-level server tests (recall, search tools, archival, blocks, the context window).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cairn_protocol import WorkspaceIdentity
from cairn_server.domain import ModelMessage
from cairn_server.memory.services import Memory
from cairn_server.storage.models import Agent, Message
from cairn_server.storage.store import Store
from sqlmodel import col, update


async def new_agent(store: Store, root_commit: str = "a" * 40) -> Agent:
    """The user dev's agent for a repository with this root commit."""
    user = await store.ensure_user("dev")
    workspace = WorkspaceIdentity(root_commit=root_commit, display_name="repo", path="/r")
    return await store.get_or_create_agent(user.id, workspace)


async def agent_in_conversation(store: Store, memory: Memory) -> tuple[Agent, str]:
    """A new agent with its default memory blocks, and the id of a new conversation of it."""
    agent = await new_agent(store)
    await memory.blocks.ensure_defaults(agent.id)
    return agent, (await store.create_conversation(agent.id)).id


async def say(
    store: Store,
    conversation_id: str,
    content: str,
    role: Literal["user", "assistant", "tool", "event"] = "user",
    at: datetime | None = None,
) -> int:
    """Store a message (dated `at` if given) and return its id."""
    if role == "event":
        message = await store.add_event_message(conversation_id, None, content)
    else:
        message = await store.add_message(conversation_id, None, ModelMessage(role, content))
    assert message.id is not None
    if at is not None:
        async with store._db.session() as session, session.begin():
            await session.exec(
                update(Message).where(col(Message.id) == message.id).values(created_at=at)
            )
    return message.id
