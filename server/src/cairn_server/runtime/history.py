"""What a continuing client is shown of the earlier conversation.

Owns the folding of stored messages and tool call records into HistoryItems.
"""

from __future__ import annotations

from cairn_protocol import HistoryItem, HistoryToolCall

from cairn_server.domain import ToolCall
from cairn_server.storage.models import Message
from cairn_server.storage.store import stored_tool_calls

HISTORY_LIMIT = 200


def build_history(messages: list[Message]) -> list[HistoryItem]:
    """User and assistant messages, each assistant one with its calls and their outcomes."""
    results = {m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id}
    items: list[HistoryItem] = []
    for message in messages:
        if message.role in ("tool", "event"):
            continue
        calls = [_history_call(call, results.get(call.id)) for call in stored_tool_calls(message)]
        items.append(
            HistoryItem(
                role="user" if message.role == "user" else "assistant",
                text=message.content,
                tool_calls=calls,
                created_at=message.created_at,
            )
        )
    return items[-HISTORY_LIMIT:]


def _history_call(call: ToolCall, result: Message | None) -> HistoryToolCall:
    status = None
    if result is not None:
        status = "error" if result.is_error else "ok"
    return HistoryToolCall(
        call_id=call.id,
        tool=call.name,
        arguments=call.arguments_object,
        status=status,
        reason=result.content[:200] if result is not None and result.is_error else None,
    )
