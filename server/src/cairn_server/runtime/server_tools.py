"""Tools the server runs itself, without a round trip to the client.

Owns their specs and executors; memory tools join here in a later issue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cairn_server.providers.base import ToolSpec
from cairn_server.storage.store import Store


@dataclass(frozen=True)
class ServerToolResult:
    content: str
    is_error: bool = False


class ConversationSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="Text to look for in earlier messages.")
    limit: int = Field(default=10, ge=1, le=50)


ServerToolFn = Callable[[Store, str, BaseModel], Awaitable[ServerToolResult]]


async def conversation_search(store: Store, agent_id: str, args: BaseModel) -> ServerToolResult:
    """Earlier messages of every conversation of this agent that contain the query."""
    assert isinstance(args, ConversationSearchArgs)
    needle = args.query.lower()
    hits: list[str] = []
    for conversation in await store.list_conversations(agent_id):
        for message in await store.list_messages(conversation.id):
            if message.role != "tool" and needle in message.content.lower():
                when = message.created_at.strftime("%Y-%m-%d %H:%M")
                hits.append(f"[{when}] {message.role}: {message.content[:500]}")
    if not hits:
        return ServerToolResult(f"no earlier message contains {args.query!r}")
    shown = hits[-args.limit :]
    return ServerToolResult("\n".join(shown))


@dataclass(frozen=True)
class ServerTool:
    spec: ToolSpec
    args: type[BaseModel]
    run: ServerToolFn


def _spec(name: str, description: str, args: type[BaseModel]) -> ToolSpec:
    schema = args.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return ToolSpec(name, description, schema)


SERVER_TOOLS: dict[str, ServerTool] = {
    "conversation_search": ServerTool(
        _spec(
            "conversation_search",
            "Search earlier messages of all your conversations about this repository.",
            ConversationSearchArgs,
        ),
        ConversationSearchArgs,
        conversation_search,
    ),
}


async def run_server_tool(
    store: Store, agent_id: str, name: str, arguments: dict[str, Any]
) -> ServerToolResult:
    tool = SERVER_TOOLS[name]
    try:
        args = tool.args.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return ServerToolResult(f"invalid arguments for {name}: {problems}", is_error=True)
    return await tool.run(store, agent_id, args)
