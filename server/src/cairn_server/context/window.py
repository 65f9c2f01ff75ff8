"""A conversation's context window: each request built within its budget, compacted when due.

Owns the steps before a model call (memory notes, compaction past the threshold, the request:
its compiled draft cached, shortened as a last resort) and compaction itself: summary (secrets
cut), mark, refrozen memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cairn_protocol import ContextCompacted
from cairn_protocol.messages import CompactionMethod, CompactionTrigger
from cairn_protocol.redaction import redact

from cairn_server.context.budget import Budget, fit_messages
from cairn_server.context.compaction import (
    can_shrink,
    choose_cut,
    digest,
    replaced_tokens,
    structured,
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
    total_tokens,
)
from cairn_server.context.memory_view import (
    MemorySections,
    freeze_memory,
    sync_memory,
    visible_sections,
)
from cairn_server.context.tokens import count_tokens
from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.memory.services import Memory
from cairn_server.providers.base import (
    Completed,
    ContextOverflowError,
    Provider,
    ProviderError,
    TextDelta,
)
from cairn_server.providers.catalog import Learned, ModelCatalog, max_output_tokens
from cairn_server.providers.windows import window_is_known
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
# A server that refuses without a word (an empty 200) is taken to have overflowed when the
# request held this share of the budget, or of SMALL_LOCAL_WINDOW when the window is unknown
# (llama-cpp-python's server starts with a 2048-token window unless told otherwise).
PLAUSIBLE_OVERFLOW_SHARE = 0.8
SMALL_LOCAL_WINDOW = 2048


@dataclass(frozen=True)
class Prepared:
    """A request ready to send and its counted size."""

    compiled: CompiledContext
    tokens: int


@dataclass
class ContextWindow:
    """One conversation's context as `model` is sent it. The steps before a model call are
    separate: `note_memory_changes` writes, `next_request` compacts when due (the request
    crosses the budget's threshold) and prepares; `prepare` only reads."""

    store: Store
    memory: Memory
    context: AgentContext
    agent_id: str
    conversation_id: str
    budget: Budget
    # Makes the summariser (the summary model's provider, or the model's) when the first
    # compaction needs it (building an SDK client costs seconds; viewing the context, none),
    # and keeps the budgets providers' overflow errors teach.
    catalog: ModelCatalog
    model: str | None = None
    # The last compiled draft and the inputs it was compiled from.
    _cached: _CompiledDraft | None = field(default=None, repr=False)
    # The messages after the compaction mark, by id, as read so far (stored ones never change).
    _loaded: dict[int, Message] = field(default_factory=dict, repr=False)
    # The last message of a cut whose summary came back no smaller: not summarised again.
    _fruitless_cut: int | None = field(default=None, repr=False)

    def load_tools(self, names: Sequence[str]) -> None:
        """Send the deferred tools named `names` from the next request on (tool_search)."""
        loaded = self.context.with_loaded(names)
        if len(loaded.tools) != len(self.context.tools):
            self.context = loaded
            self._cached = None

    async def note_memory_changes(self, run_id: str | None) -> None:
        """Freeze the memory into the conversation's prefix on its first request; later, append
        a note for each block change made elsewhere since (the prefix is never rewritten)."""
        await sync_memory(self.memory, self.store, self.agent_id, self.conversation_id, run_id)

    async def prepare(self) -> Prepared:
        """The next request from the stored history, the conversation's memory view and the
        budget, shortened if it would not fit; changes nothing."""
        return self._fitted(await self._compiled())

    async def next_request(self, run_id: str | None) -> tuple[ContextCompacted | None, Prepared]:
        """Compact when the request would cross the budget's threshold, then prepare it,
        reading the history once when nothing is compacted (a step's usual case)."""
        cached = await self._compiled()
        compaction = None
        if cached.tokens > self.budget.trigger:
            compiled = cached.draft.compiled
            compaction = await self._compact_built(compiled, cached.tokens, "threshold", run_id)
            if compaction is not None:
                cached = await self._compiled()
        return compaction, self._fitted(cached)

    def _fitted(self, cached: _CompiledDraft) -> Prepared:
        compiled, tokens = cached.draft.compiled, cached.tokens
        if tokens > self.budget.tokens:
            compiled, tokens = fit_messages(compiled, self.budget.tokens, cached.draft.rebuild)
        return Prepared(compiled, tokens)

    async def compact(
        self, trigger: CompactionTrigger, run_id: str | None, focus: str | None = None
    ) -> ContextCompacted | None:
        """Compact now (the /compact command, or after a provider's overflow error); None
        when there is nothing old enough to compact."""
        cached = await self._compiled()
        return await self._compact_built(
            cached.draft.compiled, cached.tokens, trigger, run_id, focus
        )

    def shrink_after_overflow(self, sent_tokens: int, exc: ContextOverflowError) -> Learned:
        """The provider counted more than its window holds although our count fit: lower
        this window's budget by the ratio it gave, leaving room for the answer (a quarter
        off when it gave none), and tell the catalog; returns what the catalog learned."""
        ratio = 0.75
        if exc.prompt_tokens and exc.limit:
            answer = max_output_tokens(self.catalog.settings.max_tokens, exc.limit)
            ratio = OVERFLOW_MARGIN * max(1, exc.limit - answer) / exc.prompt_tokens
        tokens = max(1, min(self.budget.tokens, int(sent_tokens * ratio)))
        self.budget = Budget(tokens, self.budget.threshold)
        return self.catalog.learn_budget(self.model, tokens, exc.limit)

    def recalibrate(self, old: Learned, new: Learned) -> None:
        """The model's token ratio moved from `old` to `new`: the budget follows it."""
        if new.ratio != old.ratio:
            scaled = Budget(int(self.budget.tokens * old.ratio / new.ratio), self.budget.threshold)
            self.budget = scaled.capped(new.learned_budget)

    def overflow_plausible(self, sent_tokens: int) -> bool:
        """Whether a request this big may have overflowed the model's window although no
        error said so: near the budget of a model whose window is known (from the table or
        an earlier overflow), or near SMALL_LOCAL_WINDOW for any other."""
        known = self.model is not None and (
            window_is_known(self.model) or self.catalog.learned_budget(self.model) is not None
        )
        reference = self.budget.tokens if known else min(self.budget.tokens, SMALL_LOCAL_WINDOW)
        return sent_tokens >= PLAUSIBLE_OVERFLOW_SHARE * reference

    async def draft(self) -> Draft:
        """What the next request is compiled from, as it stands now; changes nothing."""
        return (await self._compiled()).draft

    async def _compiled(self) -> _CompiledDraft:
        """The draft and its token count, compiled again only when its inputs changed."""
        async with self.store.unit(read_only=True):
            conversation = await self._conversation()
            memory = await visible_sections(self.memory, self.agent_id, conversation)
            stored = await self._buffer(conversation)
        key = _DraftKey(conversation.summary, memory, tuple(message.id or 0 for message in stored))
        if self._cached is None or self._cached.key != key:
            draft = Draft(self.context, memory, conversation.summary, stored)
            self._cached = _CompiledDraft(key, draft, total_tokens(draft.compiled))
        return self._cached

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
        stored = await self._buffer(conversation)
        # What stays before the messages once the summary is replaced: the summary and the kept
        # messages share the rest of the room below the threshold.
        prefix = (
            tokens - _section_tokens(compiled, "messages") - _section_tokens(compiled, "summary")
        )
        limit = summary_limit(self.budget.tokens, self.budget.trigger - prefix)
        room = self.budget.trigger - prefix - limit
        cut = choose_cut(stored, max(0, int(room * KEEP_SHARE[trigger])))
        if cut is None:
            return None
        # An automatic compaction must shrink the request (a person's /compact is done as asked):
        # not attempted when even a short summary could not, dropped when its summary did not.
        automatic = trigger != "requested"
        last_id = cut.evicted[-1].id or 0
        replaced = replaced_tokens(conversation.summary, cut.evicted)
        if automatic and (last_id == self._fruitless_cut or not can_shrink(replaced, limit)):
            return None
        method, summary, detail = await self._summarise(conversation, cut.evicted, limit, focus)
        summary, redacted = redact(summary)  # it may quote what the user typed
        if automatic and count_tokens(with_search_hint(summary, 1)) >= replaced:
            log.info("compaction dropped: its summary is not smaller than what it replaces")
            self._fruitless_cut = last_id
            return None
        evicted_total = await self._evicted_before(conversation) + len(cut.evicted)
        await self.store.compact_conversation(
            self.conversation_id, with_search_hint(summary, evicted_total), last_id
        )
        blocks = await self.memory.blocks.list_blocks(self.agent_id)
        await freeze_memory(self.memory, self.agent_id, self.conversation_id, blocks)
        after = (await self._compiled()).tokens
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
        summariser = self.catalog.summariser(self.model)
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
                answer = usable_summary(text, limit)
                if answer is not None:
                    return "summary", structured(conversation.summary, answer, evicted, limit), None
                why = "the summary model's answer was empty or over the limit"
        return "trim", digest(conversation.summary, evicted, limit, why), why

    async def _evicted_before(self, conversation: Conversation) -> int:
        if not conversation.compacted_through:
            return 0
        every = await self.store.list_messages(self.conversation_id)
        return sum(1 for m in every if (m.id or 0) <= conversation.compacted_through)

    # ------------------------------------------------------------------ helpers

    async def _buffer(self, conversation: Conversation) -> list[Message]:
        """The messages the model is sent: those after the compaction mark. Only the ones not
        read before are read (by id, so one committed out of order is not missed)."""
        mark = conversation.compacted_through
        ids = await self.store.message_ids(self.conversation_id, mark)
        missing = [message_id for message_id in ids if message_id not in self._loaded]
        if missing:
            after = mark if len(missing) == len(ids) else missing[0] - 1
            wanted = set(missing)
            for message in await self.store.list_messages(self.conversation_id, after):
                if message.id in wanted:
                    self._loaded[message.id] = message
        if len(self._loaded) > len(ids):  # compacted away
            kept = set(ids)
            self._loaded = {i: m for i, m in self._loaded.items() if i in kept}
        return [self._loaded[message_id] for message_id in ids]

    async def _conversation(self) -> Conversation:
        conversation = await self.store.get_conversation(self.conversation_id)
        if conversation is None:
            raise NotFoundError(f"no conversation {self.conversation_id!r}")
        return conversation


@dataclass(frozen=True)
class Draft:
    """What a request is compiled from, so it can be compiled again with other messages."""

    context: AgentContext
    memory: MemorySections
    summary: str
    stored: list[Message]

    @cached_property
    def compiled(self) -> CompiledContext:
        return self.rebuild([to_model_message(m) for m in self.stored])

    def rebuild(self, messages: Sequence[ModelMessage]) -> CompiledContext:
        return compile_context(self.context, self.memory, messages, self.summary)


@dataclass(frozen=True)
class _DraftKey:
    """What a draft is compiled from (stored messages are never changed, only appended)."""

    summary: str
    memory: MemorySections
    message_ids: tuple[int, ...]


@dataclass(frozen=True)
class _CompiledDraft:
    key: _DraftKey
    draft: Draft
    tokens: int


def _section_tokens(compiled: CompiledContext, name: str) -> int:
    section = next(s for s in count_context(compiled).sections if s.name == name)
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
