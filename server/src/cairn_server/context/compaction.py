"""Compaction: which older messages leave the context, and the summary that replaces them.

Owns the cut (never between a tool call and its results), the summariser's request, and
the summary stored: the model's (structured, see summary.py) or the deterministic digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cairn_server.context.compiler import message_tokens
from cairn_server.context.summary import (
    Summary,
    derived_from,
    fit,
    merge,
    parse_summary,
    quoted,
    said,
)
from cairn_server.context.tokens import count_tokens
from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.storage.models import Message
from cairn_server.storage.store import to_model_message

# The summary may take this share of the budget, and never more than SUMMARY_MAX_TOKENS.
SUMMARY_SHARE = 0.15
SUMMARY_MAX_TOKENS = 4000
SUMMARY_MIN_TOKENS = 200
# Each tool result enters the summariser's transcript cut to this many characters.
TRANSCRIPT_RESULT_CHARS = 1500
# What a summary costs at least (headings, a goal, a state line): a compaction that would
# replace fewer tokens than this cannot make the request smaller, so it is not attempted.
SUMMARY_FLOOR_TOKENS = 400
# The deterministic digest quotes this much of each user request.
DIGEST_QUOTE_CHARS = 300

SUMMARY_INSTRUCTIONS = """\
You compact the working memory of Cairn, a coding agent. The transcript below is leaving
the agent's context window; your summary replaces it, so write what the agent needs to
carry on the work without it. Answer with exactly these Markdown sections, in this order:
## Task
The task as the user stated it, in their words where it matters.
## Next step
The one step to take next.
## Remaining
- what is left of the task
## Done
- what was done, and its result
## Decisions and rules
- every rule or instruction the user gave, in their words, and each decision with why
## Files touched
- path (what was done to it)
## Facts learned
- facts about the code and its environment, verbatim: identifiers, commands, values,
  versions, errors and how each was fixed (or that it is still open)
Merge the previous summary in: keep every rule, fact and file it lists unless the
transcript shows it is no longer true; write Task, Next step and Remaining as they stand at
the end of the transcript. Be terse; no preamble. Stay under {limit} tokens."""


@dataclass(frozen=True)
class Cut:
    evicted: list[Message]
    kept: list[Message]


def summary_limit(budget_tokens: int, room: int) -> int:
    """The summary's share of the budget, and at most half the `room` it shares with the kept
    messages (a budget hardly larger than the instructions and tools leaves little)."""
    share = min(SUMMARY_MAX_TOKENS, int(budget_tokens * SUMMARY_SHARE), room // 2)
    return max(SUMMARY_MIN_TOKENS, share)


def choose_cut(messages: Sequence[Message], keep_tokens: int) -> Cut | None:
    """Evict the oldest messages so those kept hold at most `keep_tokens`, or as close to
    that as the last exchange allows: the cut falls only before a user or assistant message
    (a tool result stays with its call) and keeps at least the last exchange. None when
    nothing can be evicted."""
    boundaries = [i for i in range(1, len(messages)) if messages[i].role != "tool"]
    if not boundaries:
        return None
    sizes = [message_tokens(to_model_message(m)) for m in messages]
    suffix = [0] * (len(messages) + 1)
    for i in range(len(messages) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + sizes[i]
    cut = next((i for i in boundaries if suffix[i] <= keep_tokens), boundaries[-1])
    return Cut(list(messages[:cut]), list(messages[cut:]))


def replaced_tokens(previous_summary: str, evicted: Sequence[Message]) -> int:
    """What a new summary replaces: the previous summary and the evicted messages."""
    return count_tokens(previous_summary) + sum(
        message_tokens(to_model_message(m)) for m in evicted
    )


def can_shrink(replaced: int, limit: int) -> bool:
    """Whether a summary (at least SUMMARY_FLOOR_TOKENS, at most `limit`) could be smaller
    than the `replaced` tokens it would stand in for."""
    return replaced > min(SUMMARY_FLOOR_TOKENS, limit)


def summary_request(
    previous_summary: str, evicted: Sequence[Message], limit: int, focus: str | None
) -> ModelRequest:
    """What the summariser is asked: the previous summary and the leaving transcript."""
    parts = []
    if previous_summary:
        parts.append(f"<previous_summary>\n{previous_summary}\n</previous_summary>")
    parts.append(f"<transcript>\n{render_transcript(evicted)}\n</transcript>")
    if focus:
        parts.append(f"The user asks the summary to focus on: {focus}")
    return ModelRequest(
        system=SUMMARY_INSTRUCTIONS.format(limit=limit),
        messages=[ModelMessage("user", "\n\n".join(parts))],
        max_output_tokens=limit,
    )


def render_transcript(messages: Sequence[Message]) -> str:
    lines: list[str] = []
    for message in messages:
        if message.role == "tool":
            status = "error" if message.is_error else "ok"
            lines.append(f"[tool result, {status}] {_elided(message.content)}")
            continue
        role = "note" if message.role == "event" else message.role
        if message.content:
            lines.append(f"[{role}] {message.content}")
        for call in message.tool_calls:
            lines.append(f"[{role} calls] {call.get('name')}({call.get('arguments')})")
    return "\n".join(lines)


def usable_summary(text: str, limit: int) -> str | None:
    """The model's summary if it is one: not empty and within the limit."""
    text = text.strip()
    if not text or count_tokens(text) > limit:
        return None
    return text


def structured(previous_summary: str, answer: str, evicted: Sequence[Message], limit: int) -> str:
    """The summary stored after a model's `answer`: merged with the previous summary and
    what code derives from the evicted messages, within `limit`."""
    return _composed(previous_summary, parse_summary(answer), evicted, limit)


def digest(previous_summary: str, evicted: Sequence[Message], limit: int, why: str) -> str:
    """A summary made without a model, in the same sections: the first request as the task
    (kept from the previous summary: code cannot tell when a task changes), the latest
    request and answer as the next step, the answers as what was done, the errors met as
    facts; merged with the previous summary like a model's."""
    asks = [quoted(m.content, DIGEST_QUOTE_CHARS) for m in evicted if said(m, "user")]
    answers = [quoted(m.content, 200) for m in evicted if said(m, "assistant")]
    errors = [
        f"Error met: {_first_line(m.content)}" for m in evicted if m.role == "tool" and m.is_error
    ][-5:]
    latest = [f'The latest request: "{asks[-1]}"'] if asks else []
    latest += [f'Carry on from the last answer: "{answers[-1]}"'] if answers else []
    new = Summary(
        {
            "task": []
            if parse_summary(previous_summary).items("task") or not asks
            else [f'"{asks[0]}"'],
            "next": latest,
            "done": [f'Answered: "{answer}"' for answer in answers],
            "facts": errors,
        }
    )
    return _composed(previous_summary, new, evicted, limit, why)


def _composed(
    previous_summary: str,
    new: Summary,
    evicted: Sequence[Message],
    limit: int,
    why: str | None = None,
) -> str:
    merged = merge(parse_summary(previous_summary), new, derived_from(evicted))
    # The line with_search_hint adds counts against the limit too.
    hint = count_tokens(with_search_hint("", 10**6))
    return fit(merged, max(1, limit - hint), why)


def with_search_hint(summary: str, evicted: int) -> str:
    return (
        f"{summary}\n({evicted} earlier messages were compacted into this summary; "
        "conversation_search still finds their full text.)"
    )


def _elided(text: str, limit: int = TRANSCRIPT_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} […{len(text) - 2 * half} characters…] {text[-half:]}"


def _first_line(text: str) -> str:
    return quoted(text.strip().splitlines()[0] if text.strip() else "(empty)", 200)
