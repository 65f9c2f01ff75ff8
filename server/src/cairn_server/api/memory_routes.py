"""REST routes of an agent's memory: blocks and their history, passages, recall, context.

Owns the HTTP surface of memory; the logic lives in memory/ and context/.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated

from cairn_protocol.messages import ChatRole
from cairn_protocol.rest import (
    BlockDiff,
    BlockPublic,
    BlockVersionPublic,
    ContextItem,
    ContextReport,
    ContextSection,
    MessageHit,
    PassagePublic,
)
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from cairn_server.api.deps import MemoryDep, RuntimeDep, StoreDep, UserDep, refuse_nul
from cairn_server.api.routes import owned_agent, owned_conversation
from cairn_server.api.schemas import (
    BlockCreate,
    BlockUpdate,
    Number,
    Offset,
    PassageCreate,
    RevertRequest,
    block_public,
    public,
)
from cairn_server.context.report import view_context
from cairn_server.memory.blocks import Author
from cairn_server.storage.models import User

router = APIRouter(prefix="/v1", dependencies=[Depends(refuse_nul)])
BLOCKS = "/agents/{agent_id}/blocks"


def _user_author(user: User, reason: str | None = None) -> Author:
    return Author("user", name=user.name, reason=reason)


# ------------------------------------------------------------------ blocks


@router.get(BLOCKS, tags=["blocks"])
async def list_blocks(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str
) -> list[BlockPublic]:
    agent = await owned_agent(store, user, agent_id)
    return [block_public(block) for block in await memory.blocks.list_blocks(agent.id)]


@router.post(BLOCKS, tags=["blocks"], status_code=status.HTTP_201_CREATED)
async def create_block(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, body: BlockCreate
) -> BlockPublic:
    """Create a block; secrets in its value are cut before it is stored (`secrets_redacted`)."""
    agent = await owned_agent(store, user, agent_id)
    created = await memory.blocks.create(
        agent.id,
        body.label,
        _user_author(user),
        value=body.value,
        description=body.description,
        char_limit=body.char_limit,
        read_only=body.read_only,
    )
    return block_public(created.block, created.secrets_redacted)


@router.get(BLOCKS + "/{label}", tags=["blocks"])
async def get_block(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, label: str
) -> BlockPublic:
    agent = await owned_agent(store, user, agent_id)
    return block_public(await memory.blocks.get(agent.id, label))


@router.patch(BLOCKS + "/{label}", tags=["blocks"])
async def update_block(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, label: str, body: BlockUpdate
) -> BlockPublic:
    """Change a block's value or settings as a new version (409 if `expected_version` is stale);
    secrets in the value are cut before it is stored (`secrets_redacted`)."""
    agent = await owned_agent(store, user, agent_id)
    changed = await memory.blocks.configure(
        agent.id,
        label,
        _user_author(user, body.reason),
        value=body.value,
        description=body.description,
        char_limit=body.char_limit,
        read_only=body.read_only,
        expected_version=body.expected_version,
    )
    return block_public(changed.block, changed.secrets_redacted)


@router.delete(BLOCKS + "/{label}", tags=["blocks"], status_code=status.HTTP_204_NO_CONTENT)
async def delete_block(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, label: str
) -> Response:
    """Delete a block; its history stays, and `revert` brings it back."""
    agent = await owned_agent(store, user, agent_id)
    await memory.blocks.delete(agent.id, label, _user_author(user))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(BLOCKS + "/{label}/history", tags=["blocks"])
async def block_history(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, label: str
) -> list[BlockVersionPublic]:
    """Every version of the block, newest first, with who made it and how."""
    agent = await owned_agent(store, user, agent_id)
    return public(BlockVersionPublic, await memory.blocks.history(agent.id, label))


@router.get(BLOCKS + "/{label}/versions/{version}", tags=["blocks"])
async def block_version(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, label: str, version: Number
) -> BlockVersionPublic:
    agent = await owned_agent(store, user, agent_id)
    return BlockVersionPublic.model_validate(await memory.blocks.version(agent.id, label, version))


@router.get(BLOCKS + "/{label}/diff", tags=["blocks"])
async def block_diff(
    store: StoreDep,
    memory: MemoryDep,
    user: UserDep,
    agent_id: str,
    label: str,
    from_version: Number | None = None,
    to_version: Number | None = None,
) -> BlockDiff:
    """A unified diff between two versions (default: the newest against the one before)."""
    agent = await owned_agent(store, user, agent_id)
    old, new, diff = await memory.blocks.diff(agent.id, label, from_version, to_version)
    return BlockDiff(label=label, from_version=old, to_version=new, diff=diff)


@router.post(BLOCKS + "/{label}/revert", tags=["blocks"])
async def revert_block(
    store: StoreDep,
    memory: MemoryDep,
    user: UserDep,
    agent_id: str,
    label: str,
    body: RevertRequest,
) -> BlockPublic:
    """Make a new version holding an old version's value (recreating a deleted block)."""
    agent = await owned_agent(store, user, agent_id)
    reverted = await memory.blocks.revert(
        agent.id, label, body.version, _user_author(user, body.reason)
    )
    return block_public(reverted.block, reverted.secrets_redacted)


# ------------------------------------------------------------------ archival and recall


@router.get("/agents/{agent_id}/passages", tags=["archival"])
async def list_passages(
    store: StoreDep,
    memory: MemoryDep,
    user: UserDep,
    agent_id: str,
    query: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Offset = 0,
) -> list[PassagePublic]:
    """Ranked search with `query`; without it, the newest passages first."""
    agent = await owned_agent(store, user, agent_id)
    if query is not None and query.strip():
        hits = await memory.archive.search(agent.id, query, tags=tag, limit=limit)
        return public(PassagePublic, hits)
    passages = await memory.archive.list_passages(agent.id, tags=tag, offset=offset, limit=limit)
    return public(PassagePublic, passages)


@router.post("/agents/{agent_id}/passages", tags=["archival"], status_code=201)
async def create_passage(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, body: PassageCreate
) -> PassagePublic:
    """Keep a passage; secrets in its text are cut before it is stored (`secrets_redacted`)."""
    agent = await owned_agent(store, user, agent_id)
    kept = await memory.archive.insert(agent.id, body.text, body.tags)
    out = PassagePublic.model_validate(kept.passage)
    return out.model_copy(update={"secrets_redacted": kept.secrets_redacted})


@router.delete("/agents/{agent_id}/passages/{passage_id}", tags=["archival"], status_code=204)
async def delete_passage(
    store: StoreDep, memory: MemoryDep, user: UserDep, agent_id: str, passage_id: Number
) -> Response:
    agent = await owned_agent(store, user, agent_id)
    await memory.archive.delete(agent.id, passage_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/agents/{agent_id}/messages/search", tags=["recall"])
async def search_messages(
    store: StoreDep,
    memory: MemoryDep,
    user: UserDep,
    agent_id: str,
    query: Annotated[str, Query(min_length=1)],
    role: Annotated[list[ChatRole] | None, Query()] = None,
    start_date: date | None = None,
    end_date: date | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 10,
) -> list[MessageHit]:
    """Full-text search over every message of every conversation of the agent."""
    agent = await owned_agent(store, user, agent_id)
    if start_date and end_date and start_date > end_date:
        raise HTTPException(422, f"start_date {start_date} is after end_date {end_date}")
    start = datetime.combine(start_date, time.min, UTC) if start_date else None
    end = datetime.combine(end_date, time.max, UTC) if end_date else None  # the whole day
    hits = await memory.recall.search(
        agent.id, query, roles=role, start=start, end=end, limit=limit
    )
    return public(MessageHit, hits)


# ------------------------------------------------------------------ context


@router.get("/conversations/{conversation_id}/context", tags=["conversations"])
async def conversation_context(
    runtime: RuntimeDep, store: StoreDep, user: UserDep, conversation_id: str
) -> ContextReport:
    """The conversation's next request by section, in tokens, beside the budget."""
    conversation = await owned_conversation(store, user, conversation_id)
    agent = await owned_agent(store, user, conversation.agent_id)
    model = runtime.catalog.resolve(agent.model).model
    await runtime.agent_tools(agent)  # its HTTP MCP servers' tools count too
    view = await view_context(runtime.context_window(agent, conversation.id, model))
    return ContextReport(
        conversation_id=conversation.id,
        model=model,
        tokenizer=view.tokens.tokenizer,
        budget=view.budget,
        total_tokens=view.tokens.total,
        sections=[
            ContextSection(
                name=section.name,
                tokens=section.tokens,
                text=section.text,
                items=[ContextItem(name=name, tokens=tokens) for name, tokens in section.items],
            )
            for section in view.tokens.sections
        ],
    )
