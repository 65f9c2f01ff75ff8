"""What a continuing client is shown of the earlier conversation.

Owns the folding of stored messages, client tool call records and approvals into
HistoryItems, each call with the status, reason and result a live client showed for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from cairn_protocol import HistoryItem, HistoryToolCall
from cairn_protocol.messages import ApprovalAnswer, ToolStatus
from cairn_protocol.results import ResultPreview, failure_reason, result_preview

from cairn_server.domain import ToolCall
from cairn_server.storage.models import Message, RunApproval, ToolCallRecord
from cairn_server.storage.store import stored_tool_calls
from cairn_server.tools.registry import approve_only

HISTORY_LIMIT = 200


def build_history(
    messages: list[Message],
    records: Sequence[ToolCallRecord] = (),
    approvals: Sequence[RunApproval] = (),
) -> list[HistoryItem]:
    """User and assistant messages, each assistant one with its calls and their outcomes:
    a client call as its client reported it (denied, killed, withdrawn, with its reason),
    any other as the model read its result."""
    asked = _records_by_call(records)
    answers = {a.call_id: a.answer for a in approvals if a.answer not in (None, "deny")}
    items: list[HistoryItem] = []
    open_calls: dict[str, HistoryToolCall] = {}  # the last assistant message's, by model id
    for message in messages:
        if message.role == "tool":
            call = open_calls.pop(message.tool_call_id or "", None)
            if call is not None:
                _settle_from_message(call, message)
            continue
        if message.role == "event":
            continue
        calls = [
            _history_call(call, asked[(message.run_id, call.id)], answers)
            for call in stored_tool_calls(message)
        ]
        open_calls = {call.call_id: call for call in calls}
        items.append(
            HistoryItem(
                role="user" if message.role == "user" else "assistant",
                text=message.content,
                tool_calls=calls,
                created_at=message.created_at,
            )
        )
    return items[-HISTORY_LIMIT:]


def _records_by_call(
    records: Sequence[ToolCallRecord],
) -> defaultdict[tuple[str | None, str], list[ToolCallRecord]]:
    """Records by (run, the model's call id), oldest first: a model may reuse an id."""
    asked: defaultdict[tuple[str | None, str], list[ToolCallRecord]] = defaultdict(list)
    for record in records:
        asked[(record.run_id, record.model_call_id)].append(record)
    return asked


def _history_call(
    call: ToolCall, records: list[ToolCallRecord], answers: Mapping[str, ApprovalAnswer | None]
) -> HistoryToolCall:
    shown = HistoryToolCall(call_id=call.id, tool=call.name, arguments=call.arguments_object)
    record = records.pop(0) if records else None
    if record is None or record.status == "pending":
        return shown
    if record.status == "ok" and approve_only(call.name):  # approved: ended as the model read
        shown.approval = answers.get(record.id)
        return shown
    # As its client reported it; an unknown outcome travels as an error (as in tool_settled).
    shown.status = "error" if record.status == "unknown" else record.status
    shown.reason = record.reason
    if record.status == "error":
        shown.reason = failure_reason(record.reason, record.content)
    shown.result = result_preview(call.name, record.content) if record.content else None
    shown.approval = answers.get(record.id)
    return shown


def _settle_from_message(call: HistoryToolCall, result: Message) -> None:
    """A call no client reported (a server tool, arguments refused, not run): as the model
    read its result."""
    if call.status is not None:
        return
    call.status, call.reason, call.result = read_outcome(call.tool, result.content, result.is_error)


def read_outcome(
    tool: str, content: str, is_error: bool
) -> tuple[ToolStatus, str | None, ResultPreview | None]:
    """How a call the model read the result of ended, as shown (live and in the history):
    its status, the reason of an error, the result of a success."""
    if is_error:
        return "error", content.removeprefix("Error: ")[:200], None
    return "ok", None, result_preview(tool, content) if content else None
