"""The context viewer: a conversation's next request, section by section, in tokens.

Owns assembling the report from the compiler's sections without changing any state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cairn_server.context.compiler import (
    CompiledContext,
    ContextTokens,
    count_context,
)
from cairn_server.context.window import ContextWindow
from cairn_server.storage.models import Message


@dataclass(frozen=True)
class ContextView:
    tokens: ContextTokens
    budget: int


async def view_context(window: ContextWindow) -> ContextView:
    """The conversation's next request as it stands, changing nothing."""
    draft = await window.draft()
    return ContextView(
        count_context(_with_stored_roles(draft.compiled, draft.stored)), window.budget.tokens
    )


def _with_stored_roles(compiled: CompiledContext, stored: list[Message]) -> CompiledContext:
    """Name each message by its stored role, so notes show as `event`, not `user` (a note
    the compiler put first after a compaction keeps its `user`)."""
    sections = []
    for section in compiled.sections:
        if section.name == "messages":
            added = len(section.items) - len(stored)
            roles = [name for name, _ in section.items[:added]] + [m.role for m in stored]
            section = replace(
                section,
                items=[(role, text) for role, (_, text) in zip(roles, section.items, strict=True)],
            )
        sections.append(section)
    return replace(compiled, sections=sections)
