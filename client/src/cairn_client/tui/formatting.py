"""How tool calls, run endings, connection states and usage read in the TUI.

Owns the short sentences the chat and the status line show; pure functions, no widgets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cairn_protocol.messages import RunFinished, ToolStatus, Usage

from cairn_client.listener import ConnectionState
from cairn_client.policy.types import Approval

MAX_ARGUMENT_CHARS = 60

STATUS_SYMBOLS: dict[ToolStatus, str] = {"ok": "✓", "denied": "✗", "error": "!"}

_PATCH_TARGET = re.compile(r"^\+\+\+ (?:b/)?(\S+)", re.MULTILINE)


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
    if tool == "shell":
        return f'"{shorten(str(arguments.get("command", "")))}"'
    if tool in ("grep", "glob"):
        pattern = f'"{shorten(str(arguments.get("pattern", "")))}"'
        where = arguments.get("path")
        return f"{pattern} in {where}" if where else pattern
    if tool == "apply_patch":
        targets = _PATCH_TARGET.findall(str(arguments.get("patch", "")))
        return shorten(", ".join(dict.fromkeys(targets)))
    path = arguments.get("path")
    return shorten(str(path)) if path is not None else ""


def tool_line(
    tool: str,
    arguments: Mapping[str, Any],
    status: ToolStatus | None,
    reason: str | None,
    approval: Approval | None = None,
) -> str:
    """The compact chat line of one tool call, without its status symbol."""
    described = describe_call(tool, arguments)
    if status == "denied":
        return f"{described} denied: {reason or 'no reason given'}"
    if status == "error":
        return f"{described} error: {reason or 'unknown error'}"
    if approval is not None and approval.kind == "once":
        return f"{described} (allowed once)"
    if approval is not None and approval.kind == "session":
        return f"{described} (allowed for this session)"
    return described


_STOP_SENTENCES = {
    "cancelled": "Interrupted.",
    "step_limit": "Stopped: step limit reached.",
    "model_error": "Model error.",
    "superseded": "Superseded by your newer message.",
    "server_restart": "Stopped: the server restarted.",
}


def run_ending(event: RunFinished) -> str | None:
    """What the chat says when a run ends, or None for a normal end of turn."""
    if event.stop_reason == "end_turn":
        return None
    sentence = _STOP_SENTENCES.get(event.stop_reason, f"Run ended: {event.stop_reason}.")
    if event.detail:
        sentence = f"{sentence.rstrip('.')}: {event.detail}"
    return sentence


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
