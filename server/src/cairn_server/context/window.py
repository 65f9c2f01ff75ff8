"""A conversation's context window: each request built within its budget, compacted when due.

Owns the order of the work before a model call (memory notes, compaction past the threshold,
shortening as a last resort) and compaction itself: summary (secrets cut), mark, refrozen memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cairn_protocol import ContextCompacted
from cairn_protocol.messages import CompactionMethod, CompactionTrigger
from cairn_protocol.redaction import redact

from cairn_server.context.budget import Budget, fit_messages
from cairn_server.context.compaction import (
    choose_cut,
    digest,
    summary_limit,
    summary_request,
    usable_summary,
    with_search_hint,
)
from cairn_server.context.compiler import (
    AgentContext,
    CompiledContext,
    compile_context,
    count_context,
)
from cairn_server.context.memory_view import (
    MemorySections,
    freeze_memory,
    sync_memory,
    visible_sections,
)
from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.memory.services import Memory
from cairn_server.providers.base import (
    Completed,
    ContextOverflowError,
    Provider,
    ProviderError,
    TextDelta,
)
from cairn_server.storage.models import Conversation, Message
from cairn_server.storage.repository import NotFoundError
from cairn_server.storage.store import Store, to_model_message

log = logging.getLogger(__name__)

# After a compaction the kept messages fill this share of the room the budget leaves them
# below the threshold, so the next compaction is many steps away. A provider's overflow
# error means our count was short: keep much less. Asked for (/compact), everything but the
# last exchange goes.
KEEP_SHARE: dict[CompactionTrigger, float] = {"threshold": 0.5, "overflow": 0.2, "requested": 0.0}
# After an overflow, the budget is set this far below the window the provider reported.
OVERFLOW_MARGIN = 0.95


@dataclass(frozen=True)
class Prepared:
    """A request ready to send, its counted size, and the compaction it took (if any)."""

    compiled: CompiledContext
    tokens: int
    compaction: ContextCompacted | None = None


@dataclass
class ContextWindow:
    store: Store
    memory: Memory
    context: AgentContext
    agent_id: str
    conversation_id: str
    budget: Budget
    # The summary model's provider, or the agent's; None: digest only. Made when the first
    # compaction needs it (building an SDK client costs seconds; viewing the context, none).
    summariser: Callable[[], Provider | None]
    model: str | None = None
    # Budgets that providers' overflow errors taught, by model spec, shared across windows.
    learned_windows: dict[str, int] = field(default_factory=dict)

    async def prepare(self, run_id: str | None) -> Prepared:
        """The next request: memory changes told, compacted first if it would cross the
        threshold, and shortened if it still would not fit the budget."""
        draft = await self.draft(run_id, sync=True)
        tokens = count_context(draft.compiled).total
        compaction = None
        if tokens > self.budget.trigger:
            compaction = await self._compact_built(draft.compiled, tokens, "threshold", run_id)
            if compaction is not None:
                draft = await self.draft(run_id, sync=False)
                tokens = compaction.tokens_after
        compiled = draft.compiled
        if tokens > self.budget.tokens:
            compiled, tokens = fit_messages(compiled, self.budget.tokens, draft.rebuild)
        return Prepared(compiled, tokens, compaction)

    async def compact(
        self, trigger: CompactionTrigger, run_id: str | None, focus: str | None = None
    ) -> ContextCompacted | None:
        """Compact now (the /compact command, or after a provider's overflow error); None
        when there is nothing old enough to compact."""
        compiled = await self.build(run_id)
        tokens = count_context(compiled).total
        return await self._compact_built(compiled, tokens, trigger, run_id, focus)

    def shrink_after_overflow(self, sent_tokens: int, exc: ContextOverflowError) -> int:
        """The provider counted more than its window holds although our count fit: lower
        this window's budget by the ratio it gave (a quarter off when it gave none); returns
        the new budget."""
        ratio = 0.75
        if exc.prompt_tokens and exc.limit:
            ratio = OVERFLOW_MARGIN * exc.limit / exc.prompt_tokens
        tokens = max(1, min(self.budget.tokens, int(sent_tokens * ratio)))
        self.budget = Budget(tokens, self.budget.threshold)
        if self.model is not None:
            self.learned_windows[self.model] = tokens
        return tokens

    async def build(self, run_id: str | None = None) -> CompiledContext:
        """The request as it stands now, changing nothing."""
        return (await self.draft(run_id, sync=False)).compiled

    async def draft(self, run_id: str | None = None, *, sync: bool = False) -> Draft:
        """With `sync`, memory changes made elsewhere are first appended as notes (what a
        model call does); without, nothing is changed."""
        conversation = await self._conversation()
        memory = await self._memory_sections(run_id, sync)
        stored = await self.store.list_messages(
            self.conversation_id, conversation.compacted_through
        )
        return Draft(self.context, memory, conversation.summary, stored)

    # ------------------------------------------------------------------ compaction

    async def _compact_built(
        self,
        compiled: CompiledContext,
        tokens: int,
        trigger: CompactionTrigger,
        run_id: str | None,
        focus: str | None = None,
    ) -> ContextCompacted | None:
        conversation = await self._conversation()
        stored = await self.store.list_messages(
            self.conversation_id, conversation.compacted_through
        )
        limit = summary_limit(self.budget.tokens)
        fixed = tokens - _messages_tokens(compiled)
        room = self.budget.trigger - fixed - limit
        cut = choose_cut(stored, max(0, int(room * KEEP_SHARE[trigger])))
        if cut is None:
            return None
        method, summary, detail = await self._summarise(conversation, cut.evicted, limit, focus)
        summary, redacted = redact(summary)  # it may quote what the user typed
        evicted_total = await self._evicted_before(conversation) + len(cut.evicted)
        last_id = cut.evicted[-1].id or 0
        await self.store.compact_conversation(
            self.conversation_id, with_search_hint(summary, evicted_total), last_id
        )
        blocks = await self.memory.blocks.list_blocks(self.agent_id)
        await freeze_memory(self.memory, self.agent_id, self.conversation_id, blocks)
        after = count_context(await self.build(run_id)).total
        return ContextCompacted(
            run_id=run_id,
            trigger=trigger,
            method=method,
            messages_compacted=len(cut.evicted),
            tokens_before=tokens,
            tokens_after=after,
            context_budget=self.budget.tokens,
            detail=detail,
            secrets_redacted=redacted,
        )

    async def _summarise(
        self, conversation: Conversation, evicted: list[Message], limit: int, focus: str | None
    ) -> tuple[CompactionMethod, str, str | None]:
        """The model's summary, or the deterministic digest with the reason it was used."""
        summariser = self.summariser()
        if summariser is None:
            why = "no model is configured"
        else:
            request = summary_request(conversation.summary, evicted, limit, focus)
            try:
                text = await _complete(summariser, request)
            except ProviderError as exc:
                log.warning("summariser failed, compacting with a digest: %s", exc)
                why = f"the summary model failed ({_first_sentence(str(exc))})"
            else:
                summary = usable_summary(text, limit)
                if summary is not None:
                    return "summary", summary, None
                why = "the summary model's answer was empty or over the limit"
        return "trim", digest(conversation.summary, evicted, limit, why), why

    async def _evicted_before(self, conversation: Conversation) -> int:
        if not conversation.compacted_through:
            return 0
        every = await self.store.list_messages(self.conversation_id)
        return sum(1 for m in every if (m.id or 0) <= conversation.compacted_through)

    # ------------------------------------------------------------------ helpers

    async def _buffer(self, conversation: Conversation) -> list[Message]:
        """The messages the model is sent: those after the compaction mark."""
        return await self.store.list_messages(self.conversation_id, conversation.compacted_through)

    async def _conversation(self) -> Conversation:
        conversation = await self.store.get_conversation(self.conversation_id)
        if conversation is None:
            raise NotFoundError(f"no conversation {self.conversation_id!r}")
        return conversation

    async def _memory_sections(self, run_id: str | None, sync: bool) -> MemorySections:
        if sync:
            return await sync_memory(
                self.memory, self.store, self.agent_id, self.conversation_id, run_id
            )
        return await visible_sections(self.memory, self.agent_id, self.conversation_id)


@dataclass(frozen=True)
class Draft:
    """What a request is compiled from, so it can be compiled again with other messages."""

    context: AgentContext
    memory: MemorySections
    summary: str
    stored: list[Message]

    @property
    def compiled(self) -> CompiledContext:
        return self.rebuild([to_model_message(m) for m in self.stored])

    def rebuild(self, messages: Sequence[ModelMessage]) -> CompiledContext:
        return compile_context(self.context, self.memory, messages, self.summary)


def _messages_tokens(compiled: CompiledContext) -> int:
    section = next(s for s in count_context(compiled).sections if s.name == "messages")
    return section.tokens


async def _complete(provider: Provider, request: ModelRequest) -> str:
    text = ""
    async for event in provider.stream(request):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Completed):
            break
    return text


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")
