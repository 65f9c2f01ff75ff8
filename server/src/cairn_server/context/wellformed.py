"""Histories a provider accepts: each tool call answered right after it, no stray result,
no empty turn.

Owns how a conversation's messages are shaped before they are sent, whatever runs, cancels,
restarts or late results left in the stored history (which is never rewritten), and the
check every outgoing request is held to in tests (`problems`).
"""

from __future__ import annotations

from collections.abc import Sequence

from cairn_server.domain import ModelMessage

NO_RESULT = (
    "Error: no result was recorded for this call (the run that made it ended before it was "
    "answered). It may not have run, or only in part: check its effects before running it "
    "again."
)


def stray_result_note(call_id: str) -> str:
    """How a result whose call is no longer in the context is told (as a note)."""
    return f"[The result of a tool call no longer in this context ({call_id}):]\n"


def well_formed(messages: Sequence[ModelMessage]) -> list[ModelMessage]:
    """`messages` as a provider accepts them: each assistant message's calls followed at once
    by their results, in the calls' order (a result stored later, e.g. one that came late, is
    moved up; a call never answered gets NO_RESULT); a result whose call is not in the list
    becomes a note where it stood; an assistant message with neither text nor calls is left
    out. A history that is already well formed comes back unchanged."""
    results: dict[str, ModelMessage] = {}
    for message in messages:
        if message.role == "tool" and message.tool_call_id is not None:
            results.setdefault(message.tool_call_id, message)
    called = {call.id for m in messages if m.role == "assistant" for call in m.tool_calls}
    shaped: list[ModelMessage] = []
    answered: set[str] = set()
    for message in messages:
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            if call_id not in called:
                shaped.append(
                    ModelMessage("user", stray_result_note(call_id) + message.content, note=True)
                )
            continue
        if message.role == "assistant" and not message.content and not message.tool_calls:
            continue
        shaped.append(message)
        for call in message.tool_calls:
            result = results.get(call.id) if call.id not in answered else None
            answered.add(call.id)
            shaped.append(
                result or ModelMessage("tool", NO_RESULT, tool_call_id=call.id, is_error=True)
            )
    return shaped


def problems(messages: Sequence[ModelMessage]) -> list[str]:
    """What a provider would reject in these messages: a call not answered before the next
    turn, a result of no open call, an empty assistant message, a call id used twice."""
    found: list[str] = []
    open_calls: list[str] = []
    seen: set[str] = set()
    for position, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                found.append(f"message {position}: a result of no open call")
            else:
                open_calls.remove(message.tool_call_id)
            continue
        if open_calls:
            found.append(f"message {position}: calls {open_calls} were not answered before it")
            open_calls = []
        if message.role == "assistant":
            if not message.content and not message.tool_calls:
                found.append(f"message {position}: an empty assistant message")
            for call in message.tool_calls:
                if call.id in seen:
                    found.append(f"message {position}: call id {call.id!r} used twice")
                seen.add(call.id)
                open_calls.append(call.id)
    if open_calls:
        found.append(f"the last calls {open_calls} have no results")
    return found
