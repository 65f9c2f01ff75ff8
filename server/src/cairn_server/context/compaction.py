"""Compaction: which older messages leave the context, and the summary that replaces them.

Owns the cut (never between a tool call and its results), the summariser's request, and
the deterministic digest used when no usable summary comes back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cairn_server.context.compiler import message_tokens
from cairn_server.context.tokens import count_tokens
from cairn_server.domain import ModelMessage, ModelRequest, ToolCall
from cairn_server.storage.models import Message
from cairn_server.storage.store import stored_tool_calls, to_model_message

# The summary may take this share of the budget, and never more than SUMMARY_MAX_TOKENS.
SUMMARY_SHARE = 0.15
SUMMARY_MAX_TOKENS = 4000
# Each tool result enters the summariser's transcript cut to this many characters.
TRANSCRIPT_RESULT_CHARS = 1500
# What a summary costs at least (headings, a goal, a state line): a compaction that would
# replace fewer tokens than this cannot make the request smaller, so it is not attempted.
SUMMARY_FLOOR_TOKENS = 400
# The deterministic digest quotes this much of each user request.
DIGEST_QUOTE_CHARS = 300
PATH_ARGUMENTS = ("path", "file_path", "pattern")

SUMMARY_INSTRUCTIONS = """\
You compact the working memory of Cairn, a coding agent. The transcript below is leaving
the agent's context window; your summary replaces it, so write what the agent needs to
carry on the work without it. Keep, under short headings:
- Goals: what the user asked for, in their words where it matters, and what is done or left.
- Decisions: what was chosen and why.
- Identifiers, verbatim: file paths, functions, classes, commands, branch names, error codes.
- Errors met and how each was fixed (or that it is still open).
- Current state: the step in progress and the next step.
- Search hints: a few exact words or phrases to find the full detail later with
  conversation_search (the transcript stays searchable).
Merge the previous summary in if one is given. Be terse; no preamble. Stay under
{limit} tokens."""


@dataclass(frozen=True)
class Cut:
    evicted: list[Message]
    kept: list[Message]


def summary_limit(budget_tokens: int) -> int:
    return max(200, min(SUMMARY_MAX_TOKENS, int(budget_tokens * SUMMARY_SHARE)))


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


def digest(previous_summary: str, evicted: Sequence[Message], limit: int, why: str) -> str:
    """A summary made without a model: the user's requests quoted, files and tools used,
    errors met, the last answer; oldest requests dropped first to stay within `limit`."""
    asks = [f'- "{_quoted(m.content)}"' for m in evicted if m.role == "user" and m.content.strip()]
    calls = [call for m in evicted for call in stored_tool_calls(m)]
    tools = Counter(call.name for call in calls)
    paths = sorted({path for call in calls for path in _paths(call)})
    errors = [f"- {_first_line(m.content)}" for m in evicted if m.role == "tool" and m.is_error][
        -5:
    ]
    answers = [m.content for m in evicted if m.role == "assistant" and m.content.strip()]

    def render(kept_asks: list[str], previous: str) -> str:
        parts = [f"(Compacted without a model summary: {why}.)"]
        if previous:
            parts.append(f"Earlier summary:\n{previous}")
        if kept_asks:
            parts.append("The user asked:\n" + "\n".join(kept_asks))
        if tools:
            used = ", ".join(f"{name} ×{count}" for name, count in sorted(tools.items()))
            parts.append(f"Tools used: {used}")
        if paths:
            parts.append("Files and patterns: " + ", ".join(paths[:40]))
        if errors:
            parts.append("Errors met:\n" + "\n".join(errors))
        if answers:
            parts.append(f'Last answer: "{_quoted(answers[-1])}"')
        return "\n".join(parts)

    previous = previous_summary
    text = render(asks, previous)
    while count_tokens(text) > limit and (asks or previous):
        if len(asks) > 1:
            asks = asks[1:]
        elif previous:
            previous = _quoted(previous, len(previous) // 2) if len(previous) > 200 else ""
        else:
            asks = []
        text = render(asks, previous)
    return text


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


def _quoted(text: str, limit: int = DIGEST_QUOTE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first_line(text: str) -> str:
    return _quoted(text.strip().splitlines()[0] if text.strip() else "(empty)", 200)


def _paths(call: ToolCall) -> list[str]:
    arguments = call.arguments_object
    return [str(arguments[key]) for key in PATH_ARGUMENTS if isinstance(arguments.get(key), str)]
