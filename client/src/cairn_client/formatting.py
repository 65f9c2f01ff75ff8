"""How tool calls, run endings, compactions, retries, connection states and usage read to a person.

Owns the short sentences the TUI, headless mode and the CLIs show; pure functions, no widgets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cairn_protocol.mcp import is_mcp_tool
from cairn_protocol.messages import (
    HELPER_WORKTREE_TOOL,
    ApprovalAnswer,
    ContextCompacted,
    HelperTag,
    ModelRetry,
    RunFinished,
    ToolStatus,
    Usage,
)
from cairn_protocol.redaction import secrets_phrase
from cairn_protocol.tools import FETCH_URL, patch_header_paths

from cairn_client.listener import ConnectionState

if TYPE_CHECKING:
    from cairn_protocol.rest import ReflectionPublic

MAX_ARGUMENT_CHARS = 60

STATUS_SYMBOLS: dict[ToolStatus, str] = {"ok": "✓", "denied": "✗", "error": "!"}


def whose(helper: HelperTag | None) -> str:
    """What goes before a call's line when a helper asked for it ("helper 2: "), else ""."""
    return f"{helper.label}: " if helper is not None else ""


def helper_scope(helper: HelperTag) -> str:
    """Who asks, for the approval screen: the helper, its conversation, where it works."""
    where = (
        f"in its own worktree, branch {helper.worktree_branch}"
        if helper.worktree_branch
        else "in this checkout"
    )
    return f"Asked by {helper.label} (conversation {helper.conversation_id}), working {where}."


def shorten(text: str, limit: int = MAX_ARGUMENT_CHARS) -> str:
    """One line of at most `limit` characters, ending in … when cut."""
    single_line = " ".join(text.split())
    if len(single_line) <= limit:
        return single_line
    return single_line[: limit - 1] + "…"


def describe_call(tool: str, arguments: Mapping[str, Any]) -> str:
    """`read src/app.py`, `shell "make test"`, `grep "TODO"`: the tool and what it targets."""
    target = _call_target(tool, arguments)
    return f"{tool} {target}" if target else tool


def _call_target(tool: str, arguments: Mapping[str, Any]) -> str:
    """What the call targets; nothing for an argument the model left out (a refused call)."""
    if is_mcp_tool(tool):  # `mcp__github__create_issue {"title": …}`: the arguments, short
        return shorten(json.dumps(dict(arguments), ensure_ascii=False)) if arguments else ""
    if tool == "shell":
        return _quoted(arguments.get("command"))
    if tool in ("grep", "glob"):
        pattern = _quoted(arguments.get("pattern"))
        where = arguments.get("path")
        return f"{pattern} in {where}" if where and pattern else pattern
    if tool == "apply_patch":
        return shorten(", ".join(patch_header_paths(str(arguments.get("patch", "")))))
    if tool == FETCH_URL:
        return shorten(str(arguments.get("url", "")))
    if tool == "task":  # a helper: what it was asked
        return _quoted(arguments.get("prompt"))
    if tool == HELPER_WORKTREE_TOOL:  # what a helper changed, asked as it ends
        return f"changes on {shorten(str(arguments.get('branch', '')))}"
    path = arguments.get("path")
    return shorten(str(path)) if path is not None else ""


def _quoted(argument: Any) -> str:
    return f'"{shorten(str(argument))}"' if argument is not None else ""


def tool_line(
    tool: str,
    arguments: Mapping[str, Any],
    status: ToolStatus | None,
    reason: str | None,
    approval: ApprovalAnswer | None = None,
) -> str:
    """The compact chat line of one tool call, without its status symbol; `approval`: how a
    person allowed it. The same live and when a conversation's history is shown again."""
    described = describe_call(tool, arguments)
    if status == "denied":
        return f"{described} denied: {reason or 'no reason given'}"
    if status == "error":
        return f"{described} error: {reason or 'unknown error'}"
    if approval == "once":
        return f"{described} (allowed once)"
    if approval == "session":
        return f"{described} (allowed for this session)"
    return described


def elapsed_label(seconds: float) -> str:
    """`12s`, `3m 05s`, `1h 02m`: how long a tool call has been running."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole // 60 % 60:02d}m"


def elsewhere_line(
    tool: str, arguments: Mapping[str, Any], status: ToolStatus | None, reason: str | None
) -> str:
    """The line of a call another client runs: while it runs (status None), then its end."""
    if status is None:
        return f"{describe_call(tool, arguments)} — running in another client"
    return f"{tool_line(tool, arguments, status, reason)} — in another client"


_STOP_SENTENCES = {
    "cancelled": "Interrupted.",
    "step_limit": "Step limit reached.",
    "token_limit": "Token limit reached.",
    "cost_limit": "Cost limit reached.",
    "loop_detected": "Loop detected.",
    "truncated": "Answer cut short.",
    "model_error": "Model error.",
    "superseded": "Superseded by your newer message.",
    "server_restart": "Stopped: the server restarted.",
}

# The sentence already says the run stopped; "Loop detected: stopped: the model…" would not.
_STOPPED_PREFIX = re.compile(r"^stopped:\s*", re.IGNORECASE)


# The limits that stop a run between steps, every call answered: the conversation is whole, and
# a new message asking to continue picks the work up.
LIMIT_STOPS = frozenset({"step_limit", "token_limit", "cost_limit", "loop_detected", "truncated"})
CONTINUE = "continue"
# How to continue, in each front end's words.
CONTINUE_IN_CHAT = f'Send "{CONTINUE}" to pick the work up where it stopped.'
CONTINUE_HEADLESS = f'Run cairn -c -p "{CONTINUE}" to pick the work up where it stopped.'
CONTINUE_LATER = f'Send "{CONTINUE}" in its conversation to pick the work up where it stopped.'


def run_ending(event: RunFinished, how_to_continue: str = CONTINUE_IN_CHAT) -> str | None:
    """What the chat says when a run ends, or None for a normal end of turn."""
    return stop_sentence(event.stop_reason, event.detail, how_to_continue)


def stop_sentence(
    stop_reason: str, detail: str | None, how_to_continue: str = CONTINUE_IN_CHAT
) -> str | None:
    """Why a run ended (`Step limit reached: stopped after 200 model calls, …`), and for a
    limit how to go on; for a normal end of turn, None or what the server said the user
    must know (a model server that cannot use tools)."""
    if stop_reason == "end_turn":
        return detail or None
    sentence = _STOP_SENTENCES.get(stop_reason, f"Run ended: {stop_reason}.")
    detail = _STOPPED_PREFIX.sub("", detail or "")
    if detail:
        sentence = f"{sentence.rstrip('.')}: {detail}"
    if stop_reason in LIMIT_STOPS:
        sentence = f"{sentence.rstrip('.')}. {how_to_continue}"
    return sentence


_COMPACTION_TRIGGERS = {
    "threshold": "",
    "requested": " on request",
    "overflow": " after the model reported a context overflow",
}


def compaction_line(event: ContextCompacted) -> str:
    """`Context compacted (summary): 42 messages → summary; 9,812 → 3,104 tokens of 12,000
    (freed 6,708)`, with the trigger when it was not the threshold, why a digest was used and
    how many secrets were cut from the summary."""
    messages = f"{event.messages_compacted} message{'s' if event.messages_compacted != 1 else ''}"
    into = "summary" if event.method == "summary" else "digest"
    freed = max(0, event.tokens_before - event.tokens_after)
    line = (
        f"Context compacted{_COMPACTION_TRIGGERS.get(event.trigger, '')} ({event.method}): "
        f"{messages} → {into}; {event.tokens_before:,} → {event.tokens_after:,} tokens "
        f"of {event.context_budget:,} (freed {freed:,})"
    )
    if event.method == "trim":
        line += f"; digest used: {event.detail or 'no summary could be made'}"
    if event.secrets_redacted:
        line += f"; {secrets_phrase(event.secrets_redacted)} redacted from it"
    return line


def reflection_lines(reflection: ReflectionPublic) -> list[str]:
    """`Reflection (anthropic/claude-haiku-4-5): 2 memory edits (human v3, project v7), 1
    refused; in 1,204 · cached 0 · out 88 · $0.0016`, then one line per refused edit; a failed
    one says why it failed."""
    applied = [f"{edit.label} v{edit.version}" for edit in reflection.applied]
    made = f"{len(applied)} memory edit{'' if len(applied) == 1 else 's'}"
    if applied:
        made += f" ({', '.join(applied)})"
    if reflection.refused:
        made += f", {len(reflection.refused)} refused"
    if reflection.status == "failed":
        made = f"failed: {reflection.detail or 'no reason given'}"
    elif reflection.detail:
        made += f"; {reflection.detail}"
    cost = usage_label(reflection_usage([reflection]))
    lines = [f"Reflection ({reflection.model or 'no model'}): {made}; {cost}"]
    lines += [f"  refused {e.tool} on {e.label}: {e.reason}" for e in reflection.refused]
    return lines


def reflection_usage(reflections: Sequence[ReflectionPublic]) -> Usage:
    """What the reflections' model calls took and cost, added up."""
    total = Usage()
    for reflection in reflections:
        total = total + Usage(
            input_tokens=reflection.input_tokens,
            cached_input_tokens=reflection.cached_input_tokens,
            output_tokens=reflection.output_tokens,
            cost_usd=reflection.cost_usd,
        )
    return total


def retry_label(event: ModelRetry) -> str:
    """The status line's activity while a model call waits to be retried."""
    return f"retrying in {event.delay_s:.1f} s — {event.reason} (attempt {event.attempt})"


def notice_sentence(message: str) -> str:
    """A server message as a chat sentence: capitalised, as messages start lowercase."""
    return message[:1].upper() + message[1:]


def connection_label(state: ConnectionState, detail: str) -> str:
    """The connection part of the status line."""
    if state == "connecting":
        return "connecting…"
    if state == "connected":
        return "connected"
    if state == "reconnecting":
        return connection_lost(detail)
    if state == "failed":
        return f"connection failed: {detail}" if detail else "connection failed"
    return "disconnected"


def connection_lost(detail: str) -> str:
    reason = f": {detail}" if detail else ""
    return f"Server connection lost{reason} — reconnecting…"


def usage_label(usage: Usage) -> str:
    return (
        f"in {usage.input_tokens:,} · cached {usage.cached_input_tokens:,} · "
        f"out {usage.output_tokens:,} · ${usage.cost_usd:.4f}"
    )


def context_label(tokens: int, budget: int) -> str:
    """`ctx 3.1k/12k`: how full the last request's context was."""
    return f"ctx {compact_number(tokens)}/{compact_number(budget)}"


def compact_number(value: int) -> str:
    """850, 3.1k, 12k, 1.2M: three significant figures at most, for a narrow status line."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size - size // 2000:  # 999,600 is 1M, not 1000k
            scaled = value / size
            text = f"{scaled:.1f}" if abs(scaled) < 10 else f"{round(scaled)}"
            return text.removesuffix(".0") + suffix
    return str(value)
