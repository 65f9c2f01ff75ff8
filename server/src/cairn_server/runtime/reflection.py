"""One reflection (sleep-time memory): a cheaper model reads what a conversation said since the
last reflection and proposes memory edits, each checked and stored as a version by "reflection".

Owns the reflection's request (the blocks with their limits and read-only flags, the transcript
in chunks within a token budget), reading its answer as hostile (a malformed answer changes
nothing; each edit is refused on its own, with its reason), applying the edits and recording
what the reflection read, did and cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cairn_protocol import Usage
from cairn_protocol.redaction import redact
from cairn_protocol.rest import ReflectionStatus
from cairn_protocol.tools import invalid_arguments
from pydantic import ValidationError

from cairn_server.context.compaction import render_transcript
from cairn_server.context.tokens import count_tokens
from cairn_server.domain import MalformedArguments, ModelMessage, ModelRequest, ToolCall
from cairn_server.errors import CairnServerError
from cairn_server.memory.blocks import Author, StaleBlockError
from cairn_server.memory.edits import MemoryEditError
from cairn_server.memory.services import Memory
from cairn_server.providers.base import (
    Completed,
    Provider,
    ProviderError,
    Retrying,
    TextDelta,
    ToolCallReady,
)
from cairn_server.runtime.agent_run import counted_if_unreported
from cairn_server.storage.models import Block, Message, Reflection
from cairn_server.storage.reflections import Reflections
from cairn_server.storage.repository import NotFoundError, describe_failure
from cairn_server.storage.store import Store
from cairn_server.tools.memory_edit import MEMORY_EDIT_TOOLS, BlockEditArgs

log = logging.getLogger(__name__)

# The tools a reflection may call: the agent's own memory edit tools, with their schemas.
REFLECTION_TOOLS = {tool.spec.name: tool for tool in MEMORY_EDIT_TOOLS}
# One reflection reads at most this many chunks; the rest waits for the next one.
MAX_CHUNKS = 8
# More edits than this in one answer is not an answer to act on.
MAX_EDITS = 30
# The cap on one reflection answer's tokens.
ANSWER_TOKENS = 2000
# Only conversation turns are read: notes (memory changes, client notes) are not news.
READ_ROLES = frozenset({"user", "assistant", "tool"})

INSTRUCTIONS = """\
You are the reflection pass of Cairn, a coding agent. The conversation below is idle; you keep
the agent's core memory blocks up to date from it, so the agent remembers what matters in every
later conversation. Read the blocks and the transcript (what happened since the last
reflection), then call the memory tools to:
- add durable new facts: about the user (who they are, preferences, habits, what they always
  or never want) to `human`; about the codebase and its work (commands, conventions,
  architecture, decisions and why, pitfalls) to `project`. One short line per fact, starting
  with "- ", keeping names, numbers, dates and identifiers exactly as said;
- merge duplicate lines and remove lines the transcript shows are no longer true
  (memory_replace; an empty new_string deletes the text);
- keep every block under its limit (chars="used/limit"): condense a nearly full block with
  memory_rethink.
Never edit a block marked read-only. Never store secrets (keys, tokens, passwords). Leave out
what only matters to the task at hand (what was tried, the next step): the conversation keeps
that. Make every edit in this one answer; you will not see their results. If nothing is worth
keeping, answer "no changes" and call no tool."""


class MalformedAnswerError(CairnServerError, ValueError):
    """The reflection model's answer is not a set of edits Cairn can read; nothing is changed."""


class SecretEditError(MemoryEditError):
    """An edit that would store a secret: reflection refuses it instead of storing it cut."""


@dataclass(frozen=True)
class ProposedEdit:
    tool: str
    args: BlockEditArgs


@dataclass(frozen=True)
class ModelAnswer:
    text: str
    calls: list[ToolCall]
    usage: Usage


@dataclass
class Tally:
    """What a reflection has read, spent and proposed so far."""

    usage: Usage = field(default_factory=Usage)
    edits: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0


def proposed_edits(calls: Sequence[ToolCall]) -> list[ProposedEdit]:
    """The answer's tool calls as edits; MalformedAnswerError (naming the first problem) when
    any call is not a memory edit with valid arguments, or there are too many."""
    if len(calls) > MAX_EDITS:
        raise MalformedAnswerError(f"it proposed {len(calls)} edits, more than {MAX_EDITS}")
    edits = []
    for call in calls:
        tool = REFLECTION_TOOLS.get(call.name)
        if tool is None:
            names = ", ".join(REFLECTION_TOOLS)
            raise MalformedAnswerError(f"it called {call.name!r}, not one of {names}")
        if isinstance(call.parsed, MalformedArguments):
            raise MalformedAnswerError(call.parsed.problem)
        try:
            args = tool.args.model_validate(call.parsed)
        except ValidationError as exc:
            raise MalformedAnswerError(invalid_arguments(call.name, exc)) from None
        assert isinstance(args, BlockEditArgs)
        edits.append(ProposedEdit(call.name, args))
    return edits


def chunks(messages: Sequence[Message], budget: int) -> list[list[Message]]:
    """The messages in order, cut into runs whose transcript holds at most `budget` tokens
    (a single longer message is a chunk of its own: its transcript line is elided)."""
    result: list[list[Message]] = []
    current: list[Message] = []
    used = 0
    for message in messages:
        size = count_tokens(render_transcript([message]))
        if current and used + size > budget:
            result.append(current)
            current, used = [], 0
        current.append(message)
        used += size
    if current:
        result.append(current)
    return result


def render_blocks(blocks: Sequence[Block]) -> str:
    return "\n".join(
        f'<memory_block label="{block.label}" chars="{len(block.value)}/{block.char_limit}"'
        f"{' read-only' if block.read_only else ''}>\n"
        f"<description>{block.description}</description>\n<value>\n{block.value}\n</value>\n"
        "</memory_block>"
        for block in blocks
    )


def reflection_request(blocks: Sequence[Block], chunk: Sequence[Message], cap: int) -> ModelRequest:
    text = (
        f"<memory_blocks>\n{render_blocks(blocks)}\n</memory_blocks>\n\n"
        f"<transcript>\n{render_transcript(chunk)}\n</transcript>"
    )
    return ModelRequest(
        system=INSTRUCTIONS,
        messages=[ModelMessage("user", text)],
        tools=[tool.spec for tool in REFLECTION_TOOLS.values()],
        max_output_tokens=min(ANSWER_TOKENS, cap),
    )


def without_secrets(label: str, value: str) -> str:
    """`value`, or SecretEditError when it holds a secret the redaction finds."""
    _, found = redact(value)
    if found:
        raise SecretEditError(
            f"block {label!r} would hold a secret (the server's redaction found {found}); "
            "memory never keeps secrets"
        )
    return value


async def apply_edit(
    memory: Memory, agent_id: str, edit: ProposedEdit, author: Author, seen: dict[str, int]
) -> dict[str, Any]:
    """Apply one edit, or refuse it: what is recorded of it (label, tool, version or reason).
    A rewrite of a block that changed since the reflection read it is refused (the other
    edit wins); insertions and replacements apply to the block as it is now."""
    label = edit.args.label
    record: dict[str, Any] = {"label": label, "tool": edit.tool}
    expected = seen.get(label) if edit.tool == "memory_rethink" else None
    try:
        result = await memory.blocks.edit(
            agent_id,
            label,
            lambda block: without_secrets(label, edit.args.edited(block.value)),
            author,
            expected_version=expected,
        )
    except StaleBlockError as exc:
        record["reason"] = f"{exc}; the newer edit stands"
    except (MemoryEditError, NotFoundError) as exc:
        record["reason"] = str(exc)
    else:
        record["version"] = seen[label] = result.block.version
        return record
    log.info("reflection refused an edit of %r: %s", label, record["reason"])
    return record


@dataclass
class ReflectionPass:
    """One reflection over one conversation, from a claimed (running) row to its end."""

    store: Store
    memory: Memory
    reflections: Reflections
    provider: Provider
    model: str
    chunk_tokens: int
    answer_cap: int

    async def run(self, row: Reflection) -> Reflection:
        """Read, ask, apply, record; always ends the row (finished or failed, with why)."""
        tally = Tally()
        new: list[Message] = []
        try:
            new = await self._unread(row.conversation_id)
            return await self._reflect(row, new, tally)
        except MalformedAnswerError as exc:
            detail = f"the reflection model's answer was malformed: {exc}; nothing was changed"
        except ProviderError as exc:
            detail = f"the reflection model failed: {exc}"
        except asyncio.CancelledError:
            await self._end(row, tally, "failed", "the server shut down", new)
            raise
        except Exception as exc:  # a bug must end the reflection visibly, never the server
            log.exception("reflection %s failed", row.id)
            detail = f"internal error: {describe_failure(exc)}"
        log.warning("reflection %s on %s failed: %s", row.id, row.conversation_id, detail)
        return await self._end(row, tally, "failed", detail, new)

    async def _reflect(self, row: Reflection, new: list[Message], tally: Tally) -> Reflection:
        if not any(message.role in ("user", "assistant") for message in new):
            return await self._end(row, tally, "finished", "nothing new to reflect on", new)
        parts = chunks(new, self.chunk_tokens)
        author = Author(
            "reflection",
            name="reflection",
            conversation_id=row.conversation_id,
            reason=f"reflection {row.id} ({self.model})",
        )
        for chunk in parts[:MAX_CHUNKS]:
            blocks = await self.memory.blocks.list_blocks(row.agent_id)
            answer = await self._ask(reflection_request(blocks, chunk, self.answer_cap))
            tally.usage = tally.usage + answer.usage
            edits = proposed_edits(answer.calls)  # all or nothing: a bad answer changes nothing
            seen = {block.label: block.version for block in blocks}
            for edit in edits:
                by = replace(author, tool=edit.tool)
                tally.edits.append(await apply_edit(self.memory, row.agent_id, edit, by, seen))
            tally.read += len(chunk)
            await self.reflections.progress(
                row.id,
                through=chunk[-1].id or 0,
                messages_read=tally.read,
                usage=tally.usage,
                edits=tally.edits,
            )
        left = sum(len(chunk) for chunk in parts[MAX_CHUNKS:])
        detail = f"{left} messages are left for the next reflection" if left else None
        return await self._end(row, tally, "finished", detail, [])

    async def _unread(self, conversation_id: str) -> list[Message]:
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFoundError(f"no conversation {conversation_id!r}")
        messages = await self.store.list_messages(conversation_id, conversation.reflected_through)
        return [message for message in messages if message.role in READ_ROLES]

    async def _ask(self, request: ModelRequest) -> ModelAnswer:
        text, calls, usage = "", [], Usage()
        async for event in self.provider.stream(request):
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, ToolCallReady):
                calls.append(event.call)
            elif isinstance(event, Retrying) and event.discarded_output:
                text, calls = "", []
            elif isinstance(event, Completed):
                usage = event.usage
        prompt = count_tokens(request.system) + count_tokens(request.messages[0].content)
        return ModelAnswer(
            text, calls, counted_if_unreported(usage, prompt, text, calls, self.model)
        )

    async def _end(
        self,
        row: Reflection,
        tally: Tally,
        status: ReflectionStatus,
        detail: str | None,
        tried: list[Message],
    ) -> Reflection:
        return await self.reflections.finish(
            row.id,
            status,
            usage=tally.usage,
            edits=tally.edits,
            detail=detail,
            attempted_through=(tried[-1].id or 0) if tried else 0,
        )
