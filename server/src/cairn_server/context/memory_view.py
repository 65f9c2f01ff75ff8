"""How memory appears to the model: the frozen memory sections and the update notes.

Owns the text of the memory blocks and metadata sections (nothing in them changes between
processes or turns), and keeps a conversation's view in step with the blocks by appending a
note for each change it has not been told about.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from cairn_server.memory.edits import short_diff
from cairn_server.memory.services import Memory
from cairn_server.memory.snapshots import Snapshot
from cairn_server.storage.models import Block, BlockVersion, Conversation
from cairn_server.storage.store import Store

DELETED = -1

BLOCKS_PREAMBLE = (
    "Your memory blocks: always in view, kept across every conversation about this "
    "repository. When you learn something that will matter next time (how to build and "
    "test, conventions, pitfalls, the user's preferences), record it with memory_replace, "
    "memory_insert or memory_rethink. Blocks have no line numbers."
)


def render_blocks(blocks: Sequence[Block]) -> str:
    parts = [f"<memory_blocks>\n{BLOCKS_PREAMBLE}"]
    for block in blocks:
        attributes = f'label={quoteattr(block.label)} chars="{len(block.value)}/{block.char_limit}"'
        if block.read_only:
            attributes += ' read_only="true"'
        parts.append(
            f"<memory_block {attributes}>\n"
            f"<description>{escape(block.description)}</description>\n"
            f"<value>\n{block.value}\n</value>\n</memory_block>"
        )
    parts.append("</memory_blocks>")
    return "\n".join(parts)


_BLOCK_START = re.compile(r'^<memory_block label="([^"]*)"', re.MULTILINE)


def split_blocks(rendered: str) -> tuple[str, list[tuple[str, str]]]:
    """The rendered memory section cut into its frame (preamble, closing tag) and blocks."""
    starts = list(_BLOCK_START.finditer(rendered))
    if not starts:
        return rendered, []
    closing = rendered.rfind("</memory_blocks>")
    closing = closing if closing > starts[-1].start() else len(rendered)
    ends = [match.start() for match in starts[1:]] + [closing]
    blocks = [
        (match.group(1), rendered[match.start() : end])
        for match, end in zip(starts, ends, strict=True)
    ]
    return rendered[: starts[0].start()] + rendered[closing:], blocks


# The metadata section of the prompt prefix: the same for every conversation and process (no
# time, no counts: the model needs neither, and they made every new conversation's prefix one no
# provider had cached).
METADATA = (
    "<memory_metadata>\n"
    "Recall: every message of every conversation about this repository (conversation_search). "
    "Archival: the passages you chose to keep (archival_search). Changes made to the blocks "
    "after this conversation was shown them reach you as <memory_update> notes.\n"
    "</memory_metadata>"
)


@dataclass(frozen=True)
class MemorySections:
    blocks: str
    metadata: str


async def sync_memory(
    memory: Memory, store: Store, agent_id: str, conversation_id: str, run_id: str | None
) -> MemorySections:
    """The conversation's frozen memory sections, after telling it of any newer change.

    The first call freezes the current blocks into the conversation's prompt prefix. Later
    calls never rewrite that prefix (provider caches keep hitting); a block changed since
    (by another conversation or by the user) is told as one appended note with its diff.
    """
    async with store.unit(read_only=True):
        blocks = await memory.blocks.list_blocks(agent_id)
        snapshot = await memory.snapshots.get(conversation_id)
    if not snapshot.frozen:
        return await freeze_memory(memory, agent_id, conversation_id, blocks)
    note, seen = await _update_note(memory, agent_id, snapshot, blocks)
    if note:
        await store.add_event_message(conversation_id, run_id, note)
        await memory.snapshots.mark_seen(conversation_id, seen)
    assert snapshot.prompt_memory is not None and snapshot.prompt_metadata is not None
    return MemorySections(snapshot.prompt_memory, snapshot.prompt_metadata)


async def current_sections(
    memory: Memory, agent_id: str, blocks: Sequence[Block] | None = None
) -> MemorySections:
    """The memory sections as they would be frozen now."""
    if blocks is None:
        blocks = await memory.blocks.list_blocks(agent_id)
    return MemorySections(render_blocks(blocks), METADATA)


async def visible_sections(
    memory: Memory, agent_id: str, conversation: Conversation
) -> MemorySections:
    """What the conversation's next request will carry (its row as just read), without
    changing anything."""
    if conversation.prompt_memory is None or conversation.prompt_metadata is None:
        return await current_sections(memory, agent_id)
    return MemorySections(conversation.prompt_memory, conversation.prompt_metadata)


async def freeze_memory(
    memory: Memory, agent_id: str, conversation_id: str, blocks: Sequence[Block]
) -> MemorySections:
    """Render the current memory into the conversation's prefix (first call, compaction)."""
    sections = await current_sections(memory, agent_id, blocks)
    seen = {block.label: block.version for block in blocks}
    await memory.snapshots.freeze(conversation_id, sections.blocks, sections.metadata, seen)
    return sections


async def _update_note(
    memory: Memory, agent_id: str, snapshot: Snapshot, blocks: Sequence[Block]
) -> tuple[str, dict[str, int]]:
    changes: list[str] = []
    seen: dict[str, int] = {}
    current = {block.label: block for block in blocks}
    for label, block in current.items():
        known = snapshot.seen.get(label)
        if known == block.version:
            continue
        changes.append(await _describe_change(memory, agent_id, block, known))
        seen[label] = block.version
    for label, known in snapshot.seen.items():
        if label not in current and known != DELETED:
            changes.append(f'Block "{label}" was deleted.')
            seen[label] = DELETED
    if not changes:
        return "", {}
    body = "\n\n".join(changes)
    return f"<memory_update>\n{body}\n</memory_update>", seen


async def _describe_change(memory: Memory, agent_id: str, block: Block, known: int | None) -> str:
    latest = await memory.blocks.version(agent_id, block.label, block.version)
    who = _author_phrase(latest)
    if known is None or known == DELETED:
        return f'Block "{block.label}" was created {who} (version {block.version}):\n{block.value}'
    before = await memory.blocks.version(agent_id, block.label, known)
    diff = short_diff(block.label, before.value, block.value)
    return (
        f'Block "{block.label}" changed {who} (version {known} → {block.version}, now '
        f"{len(block.value)}/{block.char_limit} chars):\n{diff}"
    )


def _author_phrase(version: BlockVersion) -> str:
    if version.author_kind == "user":
        return "by the user"
    if version.author_kind == "agent":
        return "by you in another conversation"
    return "by the system"
