"""The context budget: how many prompt tokens one request may hold, and fitting into it.

Owns the budget of an agent (its own, else the server default, never above the model's
window), the compaction threshold, and the last-resort shortening of oversized messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from cairn_server.config import ServerSettings
from cairn_server.context.compiler import CompiledContext, count_context, message_tokens
from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.errors import CairnServerError
from cairn_server.providers.windows import context_window
from cairn_server.storage.models import Agent

# A message is never shortened below this many characters (head and tail together).
MIN_KEPT_CHARS = 400
ELISION_NOTE_CHARS = 120  # the length of the note that replaces an elided middle
# Room left in the model's window for its answer.
OUTPUT_RESERVE = ModelRequest.max_output_tokens

Rebuild = Callable[[Sequence[ModelMessage]], CompiledContext]


class BudgetError(CairnServerError, RuntimeError):
    """Even shortened, the request cannot fit the budget; the message says what to change."""


class InvalidBudgetError(CairnServerError, ValueError):
    """A budget the agent's model cannot hold; the message gives the largest that fits."""


@dataclass(frozen=True)
class Budget:
    tokens: int
    threshold: float  # share of `tokens` at which compaction starts

    @property
    def trigger(self) -> int:
        return int(self.tokens * self.threshold)

    def calibrated(self, ratio: float) -> Budget:
        """This budget in counted tokens for a model that has `ratio` of its own per counted
        token (its window holds fewer of ours)."""
        return self if ratio <= 1.0 else Budget(max(1, int(self.tokens / ratio)), self.threshold)

    def capped(self, tokens: int | None) -> Budget:
        """This budget, lowered to `tokens` when that is smaller (a window a provider taught)."""
        if tokens is None or tokens >= self.tokens:
            return self
        return Budget(tokens, self.threshold)


def agent_budget(agent: Agent, settings: ServerSettings, model: str | None) -> Budget:
    """The agent's budget (or the server's default), capped by the model's window less the
    room the model's answer needs."""
    tokens = agent.context_budget or settings.context_budget
    if model is not None:
        tokens = min(tokens, largest_budget(model))
    return Budget(tokens, settings.compaction_threshold)


def largest_budget(model: str) -> int:
    """The largest budget a model can take: its window less the room for its answer."""
    return context_window(model) - OUTPUT_RESERVE


def check_budget(tokens: int, model: str | None) -> None:
    """Refuse a budget larger than the model's window can hold."""
    if model is not None and tokens > largest_budget(model):
        raise InvalidBudgetError(
            f"a context budget of {tokens} tokens does not fit {model}: its window holds "
            f"{context_window(model)} tokens, less {OUTPUT_RESERVE} for the answer, so at "
            f"most {largest_budget(model)}"
        )


def fit_messages(
    compiled: CompiledContext, budget: int, rebuild: Rebuild
) -> tuple[CompiledContext, int]:
    """Shorten the largest messages (the middle of each elided, head and tail kept) until
    the request fits `budget`; the stored messages are untouched. Raises BudgetError when
    everything shortenable is already short."""
    total = count_context(compiled).total
    messages = list(compiled.request.messages)
    while total > budget:
        index = _largest(messages)
        if index is None:
            raise BudgetError(
                f"the request needs {total} tokens but the context budget is {budget}, and "
                "nothing left in it can be shortened; raise the agent's context budget "
                "(CAIRN_CONTEXT_BUDGET or PATCH /v1/agents/{id}) or shorten its memory blocks"
            )
        shortened = _shortened(messages[index], total - budget)
        if len(shortened.content) >= len(messages[index].content):
            raise BudgetError(f"cannot shorten the request below {total} tokens (budget {budget})")
        messages[index] = shortened
        compiled = rebuild(messages)
        total = count_context(compiled).total
    return compiled, total


def _largest(messages: Sequence[ModelMessage]) -> int | None:
    shortest = MIN_KEPT_CHARS + ELISION_NOTE_CHARS
    sizes = [(len(m.content), i) for i, m in enumerate(messages) if len(m.content) > shortest]
    return max(sizes)[1] if sizes else None


def _shortened(message: ModelMessage, excess_tokens: int) -> ModelMessage:
    """The message with its middle elided: about `excess_tokens` fewer (an estimate, so the
    caller recounts), never below MIN_KEPT_CHARS."""
    content = message.content
    chars_per_token = max(1.0, len(content) / max(1, message_tokens(message)))
    removal = int((excess_tokens + 16) * chars_per_token * 1.1) + ELISION_NOTE_CHARS
    keep = max(MIN_KEPT_CHARS, len(content) - removal)
    head, tail = content[: keep // 2], content[len(content) - keep // 2 :]
    elided = len(content) - len(head) - len(tail)
    note = (
        f"\n[… {elided} characters elided to fit the context budget; "
        "ask for a narrower range to see them …]\n"
    )
    return replace(message, content=head + note + tail)
