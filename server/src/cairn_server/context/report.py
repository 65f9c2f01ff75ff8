"""The context viewer: a conversation's next request, section by section, in tokens.

Owns assembling the report from the compiler's sections without changing any state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cairn_protocol import CLIENT_TOOLS

from cairn_server.context.compiler import (
    AgentContext,
    CompiledContext,
    ContextTokens,
    compile_context,
    count_context,
)
from cairn_server.context.memory_view import visible_sections
from cairn_server.memory.services import Memory
from cairn_server.memory.tools import SERVER_TOOLS
from cairn_server.storage.models import Agent, Conversation, Message
from cairn_server.storage.store import Store, to_model_message


@dataclass(frozen=True)
class ContextView:
    tokens: ContextTokens
    budget: int


def agent_context(agent: Agent, client_tools: list[str] | None = None) -> AgentContext:
    """The tools a run offers: the client's (all of them unless told) and the server's."""
    return AgentContext(
        workspace_name=agent.display_name,
        client_tools=list(CLIENT_TOOLS) if client_tools is None else client_tools,
        server_tools=[tool.spec for tool in SERVER_TOOLS.values()],
    )


async def view_context(
    memory: Memory, store: Store, agent: Agent, conversation: Conversation, budget: int
) -> ContextView:
    sections = await visible_sections(memory, agent.id, conversation.id)
    stored = await store.list_messages(conversation.id)
    messages = [to_model_message(m) for m in stored]
    compiled = compile_context(agent_context(agent), sections, messages, conversation.summary)
    return ContextView(count_context(_with_stored_roles(compiled, stored)), budget)


def _with_stored_roles(compiled: CompiledContext, stored: list[Message]) -> CompiledContext:
    """Name each message by its stored role, so notes show as `event`, not `user`."""
    sections = [
        replace(
            section,
            items=[(m.role, text) for m, (_, text) in zip(stored, section.items, strict=True)],
        )
        if section.name == "messages"
        else section
        for section in compiled.sections
    ]
    return replace(compiled, sections=sections)
